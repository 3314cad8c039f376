/** Watching a file for changes (`lb serve --watch`, and a worker following the state file). */
import { dirname, resolve } from "node:path";

/**
 * Calls `onChange` (debounced) when the file at `path` changes. Watches the directory, not
 * the file, because editors save by writing a new file and renaming it over the old one.
 */
export function watchFile(
  path: string,
  onChange: () => void,
  debounceMs = 200,
): { close(): void } {
  const abs = resolve(path);
  const watcher = Deno.watchFs(dirname(abs), { recursive: false });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  (async () => {
    try {
      for await (const ev of watcher) {
        if (closed) break;
        if (ev.kind === "access" || !ev.paths.some((p) => resolve(p) === abs)) continue;
        clearTimeout(timer);
        timer = setTimeout(() => {
          timer = undefined;
          if (!closed) onChange();
        }, debounceMs);
      }
    } catch {
      // the watcher was closed
    }
  })();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      try {
        watcher.close();
      } catch {
        // already closed
      }
    },
  };
}
