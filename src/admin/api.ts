/**
 * The admin JSON API under `/api`: servers and strategy. Only POST, PATCH, PUT and DELETE
 * change anything; a request that is refused (bad JSON, wrong types, unknown fields, an
 * oversized body) changes nothing.
 *
 * Errors have one shape: `{"error": {"status", "code", "message", "fields"?}}`, where
 * `fields` maps a body field to what is wrong with it.
 */
import { type Context, Hono } from "hono";
import { z } from "zod";
import type { Config } from "../config/config.ts";
import { parseBackendUrl } from "../balancing/pool.ts";
import { STRATEGY_NAMES } from "../balancing/strategies/registry.ts";
import { type Control, ControlError, PersistError } from "../control/control.ts";

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

const SERVER_NAME = /^[A-Za-z0-9._:-]+$/;
const weight = z.number({ invalid_type_error: "must be a number" }).int(
  "must be a whole number from 1 to 1000",
).min(1, "must be a whole number from 1 to 1000").max(
  1000,
  "must be a whole number from 1 to 1000",
);

const AddServer = z.object({
  url: z.string({ required_error: "is required", invalid_type_error: "must be a string" })
    .superRefine((v, ctx) => {
      try {
        parseBackendUrl(v);
      } catch (e) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
      }
    }),
  name: z.string({ invalid_type_error: "must be a string" }).min(1).max(100).regex(
    SERVER_NAME,
    "may contain letters, digits and . _ : - only",
  ).optional(),
  weight: weight.optional(),
  maxConnections: z.number({ invalid_type_error: "must be a number" }).int().min(0).optional(),
}).strict();

const PatchServer = z.object({
  weight: weight.optional(),
  state: z.enum(["draining", "disabled", "enabled"], {
    errorMap: () => ({ message: "must be draining, disabled or enabled" }),
  }).optional(),
}).strict().refine((v) => v.weight !== undefined || v.state !== undefined, {
  message: "give weight, state or both",
});

const PutStrategy = z.object({
  name: z.string({ required_error: "is required", invalid_type_error: "must be a string" })
    .refine((s) => STRATEGY_NAMES.includes(s), {
      message: `must be one of: ${STRATEGY_NAMES.join(", ")}`,
    }),
  key: z.string().regex(/^(ip|path|(header|cookie|query):[A-Za-z0-9!#$%&'*+.^_`|~-]+)$/, {
    message: "must be ip, path, header:NAME, cookie:NAME or query:NAME",
  }).optional(),
  balanceFactor: z.number().refine((n) => n === 0 || n > 1, "must be 0 (off) or greater than 1")
    .optional(),
  vnodes: z.number().int().min(1).max(10_000).optional(),
  tableSize: z.number().int().min(7).max(1_000_003).optional(),
}).strict();

export interface ApiOptions {
  control: Control;
  /** The health state a server added through the API starts in. */
  initiallyHealthy: (config: Config) => boolean;
  /** Who is asking: the client's address. */
  who: (c: Context) => string;
}

/** Builds the `/api` routes (mount with `app.route("/api", …)`). */
export function createApi(opts: ApiOptions): Hono {
  const { control } = opts;
  const api = new Hono();

  const strategyJson = () => {
    const st = control.strategy();
    return { name: st.name, options: st.options, available: STRATEGY_NAMES };
  };

  api.get("/servers", (c) => {
    const now = Date.now();
    return c.json({ servers: control.pool.servers.map((s) => control.view(s, now)) });
  });
  api.post("/servers", async (c) => {
    const body = validate(AddServer, await readJson(c.req.raw));
    const s = await control.addServer(
      body,
      opts.who(c),
      opts.initiallyHealthy(control.config),
    );
    return c.json(control.view(s), 201, { location: `/api/servers/${encodeURIComponent(s.id)}` });
  });
  api.get("/servers/:id", (c) => c.json(control.view(control.get(c.req.param("id")))));
  api.patch("/servers/:id", async (c) => {
    const id = c.req.param("id");
    control.get(id); // 404 before reading the body
    const body = validate(PatchServer, await readJson(c.req.raw));
    const s = await control.updateServer(id, body, opts.who(c));
    return c.json(control.view(s));
  });
  api.delete("/servers/:id", async (c) => {
    const s = await control.removeServer(c.req.param("id"), opts.who(c));
    return c.json({
      ...control.view(s),
      message: "draining: the server leaves once its in-flight requests have finished",
    }, 202);
  });

  api.get("/strategy", (c) => c.json(strategyJson()));
  api.put("/strategy", async (c) => {
    const { name, ...hash } = validate(PutStrategy, await readJson(c.req.raw));
    await control.setStrategy(name, hash, opts.who(c));
    return c.json(strategyJson());
  });

  // Known paths with a method they do not take: 405 with Allow (a GET never changes state).
  const allow: [string, string][] = [
    ["/servers", "GET, POST"],
    ["/servers/:id", "GET, PATCH, DELETE"],
    ["/strategy", "GET, PUT"],
  ];
  for (const [path, methods] of allow) {
    api.all(
      path,
      (c) =>
        errorJson(c, 405, "method_not_allowed", `${path} takes ${methods}`, undefined, {
          allow: methods,
        }),
    );
  }

  api.onError((err, c) => {
    if (err instanceof ApiError) return errorJson(c, err.status, err.code, err.message, err.fields);
    if (err instanceof ControlError) {
      const code = err.status === 404
        ? "not_found"
        : err.status === 409
        ? "conflict"
        : "bad_request";
      return errorJson(
        c,
        err.status,
        code,
        err.field ? `${err.field}: ${err.message}` : err.message,
        err.field ? { [err.field]: err.message } : undefined,
      );
    }
    if (err instanceof PersistError) return errorJson(c, 500, "not_saved", err.message);
    throw err;
  });
  return api;
}
