/**
 * The TLS sections of lb.yaml: `listen.tls` (certificate files or ACME, HSTS),
 * `listen.redirectHttp`, `admin.tls` and `upstreamTls` (see sections.ts for the per-pool
 * form). Files are named here and read when lb starts or reloads (tls/ checks them).
 */
import { z } from "zod";
import { seconds } from "./units.ts";

const file = z.string({ invalid_type_error: "must be a file path" }).min(1, "must not be empty");

/** A certificate chain and its key, as PEM files. */
export const certFilesSchema = z.object({
  cert: file,
  key: file,
}).strict();

export type CertFiles = z.infer<typeof certFilesSchema>;

const domainSchema = z.string().regex(
  /^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]*[a-z0-9])?$/i,
  "must be a domain name like example.com",
).transform((d) => d.toLowerCase());

/** Certificates from an ACME CA (RFC 8555), obtained and renewed by lb. */
export const acmeSchema = z.object({
  /** The CA's directory URL. */
  directory: z.string().url("must be the ACME directory URL").refine(
    (u) => u.startsWith("https://"),
    "must be an https:// URL",
  ),
  /** The account's contact address. */
  email: z.string().email("must be an email address").optional(),
  domains: z.array(domainSchema).min(1, "needs at least one domain"),
  /** Where the account key and certificates are kept (reused across restarts). */
  storage: file,
  /** Trust for the ACME server's own HTTPS (a private CA); default: the system roots. */
  caBundle: file.optional(),
}).strict();

export type AcmeConfig = z.infer<typeof acmeSchema>;

/** `listen.tls`: cert and key files, or acme; and HSTS. */
export const listenTlsSchema = z.object({
  cert: file.optional(),
  key: file.optional(),
  acme: acmeSchema.optional(),
  /** Strict-Transport-Security max-age (e.g. 365d); default none. */
  hsts: seconds.optional(),
}).strict().superRefine((t, ctx) => {
  const files = t.cert !== undefined || t.key !== undefined;
  if (files && t.acme) {
    ctx.addIssue({ code: "custom", message: "give cert and key, or acme, not both" });
  } else if (!files && !t.acme) {
    ctx.addIssue({ code: "custom", message: "needs cert and key, or acme" });
  } else if (files && (t.cert === undefined || t.key === undefined)) {
    const missing = t.cert === undefined ? "cert" : "key";
    ctx.addIssue({ code: "custom", path: [missing], message: "is required with the other" });
  }
});

export type ListenTls = z.infer<typeof listenTlsSchema>;

/** `upstreamTls`: how lb speaks TLS to https:// backends. */
export const upstreamTlsSchema = z.object({
  /** CA certificates (PEM) that backends' certificates must chain to; default: system roots. */
  ca: file.optional(),
  /** The name sent in SNI and verified; default: the backend URL's host. */
  serverName: z.string().min(1).optional(),
  /** A client certificate for backends that demand one (mTLS). */
  cert: file.optional(),
  key: file.optional(),
  insecureSkipVerify: z.boolean().default(false),
}).strict().superRefine((t, ctx) => {
  if ((t.cert === undefined) !== (t.key === undefined)) {
    const missing = t.cert === undefined ? "cert" : "key";
    ctx.addIssue({ code: "custom", path: [missing], message: "is required with the other" });
  }
});

export type UpstreamTls = z.infer<typeof upstreamTlsSchema>;
