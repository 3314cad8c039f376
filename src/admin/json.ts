/**
 * JSON in and out of the admin API: a body read with a size cap and a content type, checked
 * by a zod schema, and one error shape, `{"error": {"status", "code", "message", "fields"?}}`,
 * where `fields` maps a body field to what is wrong with it.
 */
import type { Context } from "hono";
import type { z } from "zod";

/** Largest request body the API reads. */
const MAX_BODY_BYTES = 64 * 1024;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields?: Record<string, string>,
  ) {
    super(message);
  }
}

/** `{"error": {...}}` with the given status. */
export function errorJson(
  c: Context,
  status: number,
  code: string,
  message: string,
  fields?: Record<string, string>,
  headers?: Record<string, string>,
): Response {
  return c.json(
    { error: { status, code, message, ...(fields && { fields }) } },
    status as 400,
    headers,
  );
}

/**
 * Reads a JSON body of at most `limit` bytes, counting what actually arrives (a
 * Content-Length can lie). Requires `content-type: application/json`, which also means a
 * web page on another site cannot send it without a CORS preflight (which lb never grants).
 */
export async function readJson(req: Request, limit = MAX_BODY_BYTES): Promise<unknown> {
  const type = req.headers.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    await req.body?.cancel();
    throw new ApiError(
      415,
      "unsupported_media_type",
      "send the body as JSON with the header content-type: application/json",
    );
  }
  const declared = Number(req.headers.get("content-length") ?? "0");
  const tooLarge = () =>
    new ApiError(413, "payload_too_large", `the body must be at most ${limit} bytes`);
  if (declared > limit) {
    await req.body?.cancel();
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (req.body) {
    const reader = req.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel();
        throw tooLarge();
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let off = 0;
  for (const ch of chunks) {
    bytes.set(ch, off);
    off += ch.byteLength;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ApiError(400, "bad_json", "the body is not valid UTF-8");
  }
  if (text.trim() === "") {
    throw new ApiError(400, "bad_json", "the body is empty; send a JSON object");
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, "bad_json", `malformed JSON: ${(e as Error).message.split("\n")[0]}`);
  }
}

/** Validates `raw` with a zod schema; problems become a 400 naming each field. */
export function validate<T>(schema: z.ZodType<T>, raw: unknown): T {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ApiError(400, "bad_request", "the body must be a JSON object");
  }
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const fields: Record<string, string> = {};
  for (const i of r.error.issues) {
    if (i.code === "unrecognized_keys") {
      for (const k of i.keys) fields[k] = "unknown field";
      continue;
    }
    const path = i.path.join(".") || "(body)";
    fields[path] ??= i.message;
  }
  const message = Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join("; ");
  throw new ApiError(400, "bad_request", message, fields);
}
