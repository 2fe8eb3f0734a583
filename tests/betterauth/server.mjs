// A real Better Auth server, used by jwt-guard's end-to-end tests as the JWT issuer.
//
// Everything token-related is Better Auth's own code: the `jwt` plugin mints the keys,
// signs the tokens (GET /api/auth/token) and publishes the JWKS (GET /api/auth/jwks).
// Users and keys live in Better Auth's in-memory adapter, so each process starts empty.
//
// Environment:
//   PORT                   required; TCP port to listen on ("0" picks a free one)
//   HOST                   listen address, default 127.0.0.1
//   BETTER_AUTH_URL        base URL, default http://HOST:PORT; becomes `iss` and `aud`
//   BETTER_AUTH_SECRET     secret (encrypts the private keys, signs cookies); a fixed
//                          test-only default is used when unset
//   JWT_ALG                EdDSA (default), ES256, ES512, RS256 or PS256
//   JWKS_ROTATION_SECONDS  optional: jwks.rotationInterval; a key expires that many
//                          seconds after it was minted and the next signing mints a new one
//   JWKS_GRACE_SECONDS     optional: jwks.gracePeriod; how long an expired key stays in
//                          the JWKS (default: 86400 when rotating, else Better Auth's 30 days)
//   JWT_EXPIRATION         optional: jwt.expirationTime as a time span ("15m", "5s"); 15m default
//   JWT_ISSUER, JWT_AUDIENCE  optional: override `iss` / `aud` (default: the base URL);
//                          JWT_AUDIENCE may be a comma-separated list
//   JWKS_PATH              optional: jwks.jwksPath (default /jwks, i.e. /api/auth/jwks)
//   JWKS_PREMINT           "1" (default) mints the first key before READY; "0" leaves it
//                          to the first JWKS fetch or signing, as a fresh deployment would
//
// Prints exactly one line "READY <port>" on stdout once it is listening. Better Auth's
// own log lines go to stderr. SIGTERM / SIGINT close the server and exit 0.

import http from "node:http";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins/jwt";

function fail(message) {
  process.stderr.write(`betterauth-issuer: ${message}\n`);
  process.exit(2);
}

function positiveInt(name) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) fail(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

const portRaw = process.env.PORT;
if (portRaw === undefined || portRaw === "" || !/^\d+$/.test(portRaw) || Number(portRaw) > 65535) {
  fail("PORT must be set to a TCP port number");
}
const port = Number(portRaw);
const host = process.env.HOST || "127.0.0.1";

const KEY_PAIR_CONFIGS = {
  EdDSA: { alg: "EdDSA", crv: "Ed25519" },
  ES256: { alg: "ES256" },
  ES512: { alg: "ES512" },
  RS256: { alg: "RS256", modulusLength: 2048 },
  PS256: { alg: "PS256", modulusLength: 2048 },
};
const alg = process.env.JWT_ALG || "EdDSA";
const keyPairConfig = KEY_PAIR_CONFIGS[alg];
if (!keyPairConfig) fail(`JWT_ALG must be one of ${Object.keys(KEY_PAIR_CONFIGS).join(", ")}; got ${JSON.stringify(alg)}`);

const rotationSeconds = positiveInt("JWKS_ROTATION_SECONDS");
const graceSeconds = positiveInt("JWKS_GRACE_SECONDS") ?? (rotationSeconds ? 86400 : undefined);

const jwks = { keyPairConfig };
if (rotationSeconds) jwks.rotationInterval = rotationSeconds;
if (graceSeconds) jwks.gracePeriod = graceSeconds;
if (process.env.JWKS_PATH) jwks.jwksPath = process.env.JWKS_PATH;

const jwtOptions = {};
if (process.env.JWT_EXPIRATION) jwtOptions.expirationTime = process.env.JWT_EXPIRATION;
if (process.env.JWT_ISSUER) jwtOptions.issuer = process.env.JWT_ISSUER;
if (process.env.JWT_AUDIENCE) {
  const auds = process.env.JWT_AUDIENCE.split(",").map((s) => s.trim()).filter(Boolean);
  jwtOptions.audience = auds.length === 1 ? auds[0] : auds;
}

const secret =
  process.env.BETTER_AUTH_SECRET || "jwt-guard-e2e-test-secret-not-for-production-0123456789";

// Better Auth's in-memory "database": one array per model, created on demand.
const db = { user: [], session: [], account: [], verification: [], jwks: [] };

const server = http.createServer();

async function main() {
  // Listen first so that PORT=0 works; the base URL depends on the real port.
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const actualPort = server.address().port;
  const baseURL = process.env.BETTER_AUTH_URL || `http://${host}:${actualPort}`;

  const auth = betterAuth({
    baseURL,
    secret,
    database: memoryAdapter(db),
    emailAndPassword: { enabled: true },
    // Tests sign up and sign in many users from one address in quick succession.
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    plugins: [jwt({ jwks, jwt: jwtOptions })],
  });

  if (process.env.JWKS_PREMINT !== "0") {
    // The JWKS endpoint mints the first key when none exists (Better Auth's own code path).
    await auth.api.getJwks();
  }

  server.on("request", toNodeHandler(auth));
  process.stdout.write(`READY ${actualPort}\n`);
}

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

main().catch((err) => {
  process.stderr.write(`betterauth-issuer: startup failed: ${err?.stack || err}\n`);
  process.exit(1);
});
