/**
 * The TLS sections of lb.yaml: `listen.tls` (certificate files or ACME, HSTS),
 * `listen.redirectHttp`, `admin.tls` and `upstreamTls` (see sections.ts for the per-pool
 * form). Files are named here and read when lb starts or reloads (tls/ checks them).
 */
import { z } from "zod";
import { configRelative } from "./paths.ts";
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

/** A name to send in SNI and verify: a DNS name or an IP address, as a certificate names it. */
const tlsNameSchema = z.string({ invalid_type_error: "must be a host name" }).regex(
  /^(([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?|\d{1,3}(\.\d{1,3}){3}|[0-9a-f:.]*:[0-9a-f:.]*)$/i,
  "must be a host name like api.internal or an IP address",
);

/**
 * `upstreamTls` (top level, and any part of it in a pool): how lb speaks TLS to https://
 * backends. A pool's keys replace the top level's one by one, except `cert` and `key`,
 * which come as a pair from one level.
 */
export const upstreamTlsSchema = z.object({
  /** CA certificates (PEM) that backends' certificates must chain to, besides Deno's roots. */
  ca: file.optional(),
  /** The name sent in SNI and verified; default: the backend URL's host. */
  serverName: tlsNameSchema.optional(),
  /** A client certificate for backends that demand one (mTLS). */
  cert: file.optional(),
  key: file.optional(),
  /** Refused: Deno 2.9 cannot skip verification for one connection (see the message). */
  insecureSkipVerify: z.boolean().optional(),
}).strict().superRefine((t, ctx) => {
  if ((t.cert === undefined) !== (t.key === undefined)) {
    const missing = t.cert === undefined ? "cert" : "key";
    ctx.addIssue({ code: "custom", path: [missing], message: "is required with the other" });
  }
  if (t.insecureSkipVerify) {
    ctx.addIssue({
      code: "custom",
      path: ["insecureSkipVerify"],
      message: "Deno 2.9 cannot skip certificate checks for one connection; give the backend's " +
        "CA (or its own certificate, if not a CA certificate) in upstreamTls.ca instead",
    });
  }
});

export type UpstreamTls = z.infer<typeof upstreamTlsSchema>;

/**
 * The config with the files of its TLS sections as lb reads them: relative paths are
 * relative to the config file's directory (see `configRelative`), like upstreamTls's.
 */
export function withTlsPaths<C extends TlsPaths>(config: C, source: string | undefined): C {
  const at = (p: string) => configRelative(p, source);
  const files = (f: { cert: string; key: string }) => ({ ...f, cert: at(f.cert), key: at(f.key) });
  const tls = config.listen.tls;
  return {
    ...config,
    listen: {
      ...config.listen,
      ...(tls && {
        tls: {
          ...tls,
          ...(tls.cert !== undefined && { cert: at(tls.cert) }),
          ...(tls.key !== undefined && { key: at(tls.key) }),
          ...(tls.acme && {
            acme: {
              ...tls.acme,
              storage: at(tls.acme.storage),
              ...(tls.acme.caBundle && { caBundle: at(tls.acme.caBundle) }),
            },
          }),
        },
      }),
    },
    admin: { ...config.admin, ...(config.admin.tls && { tls: files(config.admin.tls) }) },
  };
}

interface TlsPaths {
  listen: { tls?: ListenTls };
  admin: { tls?: CertFiles };
}
