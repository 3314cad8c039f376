/** Where a config came from, and how the files it names are found. */
import { dirname, isAbsolute, join } from "node:path";

/** Where the config came from when no file was read. */
export const BUILT_IN = "built-in defaults";

/**
 * A file named in a config as lb reads it: a relative path is relative to the config
 * file's directory (the working directory for a config that is no file), so lb finds the
 * same files wherever it is started from.
 */
export function configRelative(path: string, source: string | undefined): string {
  if (isAbsolute(path)) return path;
  return source !== undefined && source !== BUILT_IN ? join(dirname(source), path) : path;
}
