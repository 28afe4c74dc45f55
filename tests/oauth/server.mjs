// A real OAuth2 token server (oauth2-mock-server) on 127.0.0.1, for atkproxy's tests.
//
// Prints one JSON line once listening: {"token_url": ..., "control": ...}. Exits when its
// standard input closes, so it never outlives the test process that started it.
//
// The control server lets a test steer the token endpoint through the package's own hooks:
//   PUT  /config    {"expires_in": 2, "clients": {"id": "secret"}}   (null/absent: defaults)
//   POST /answer    {"status": 503, "body": {...}, "times": 1}        the next answers, as given
//   GET  /requests  the token requests seen so far, and what was issued to each
//   POST /reset     forget requests, scripted answers and config
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { OAuth2Server } from "oauth2-mock-server";

const server = new OAuth2Server();
await server.issuer.keys.generate("RS256");

let config = {};
let scripted = [];
let requests = [];

function basicCredentials(header) {
  const match = /^Basic\s+(.+)$/i.exec(header ?? "");
  if (!match) return null;
  const text = Buffer.from(match[1], "base64").toString("utf8");
  const colon = text.indexOf(":");
  return colon < 0 ? null : [decodeURIComponent(text.slice(0, colon)), decodeURIComponent(text.slice(colon + 1))];
}

function clientRejected(req) {
  if (!config.clients) return false;
  const basic = basicCredentials(req.headers.authorization);
  const [id, secret] = basic ?? [req.body.client_id, req.body.client_secret];
  if (req.body.grant_type === "refresh_token" && secret === undefined) {
    return !(id in config.clients); // a public client refreshing
  }
  return config.clients[id] === undefined || config.clients[id] !== secret;
}

// Tokens signed in the same second would otherwise be identical: give each its own id.
server.service.on("beforeTokenSigning", (token) => {
  token.payload.jti = randomUUID();
});

server.service.on("beforeResponse", (response, req) => {
  const seen = {
    body: { ...req.body },
    authorization: req.headers.authorization ?? null,
    content_type: req.headers["content-type"] ?? null,
  };
  requests.push(seen);
  if (scripted.length > 0) {
    const answer = scripted[0];
    answer.times -= 1;
    if (answer.times <= 0) scripted.shift();
    response.statusCode = answer.status;
    response.body = answer.body;
  } else if (clientRejected(req)) {
    response.statusCode = 401;
    response.body = { error: "invalid_client" };
  } else if (config.expires_in !== undefined && config.expires_in !== null) {
    response.body.expires_in = config.expires_in;
  }
  seen.status = response.statusCode;
  seen.issued = response.body;
});

async function readJson(req) {
  let text = "";
  for await (const chunk of req) text += chunk;
  return text ? JSON.parse(text) : {};
}

const control = createServer(async (req, res) => {
  let answer = { ok: true };
  if (req.method === "PUT" && req.url === "/config") {
    config = await readJson(req);
  } else if (req.method === "POST" && req.url === "/answer") {
    const answer = await readJson(req);
    scripted.push({ status: answer.status ?? 503, body: answer.body ?? {}, times: answer.times ?? 1 });
  } else if (req.method === "GET" && req.url === "/requests") {
    answer = requests;
  } else if (req.method === "POST" && req.url === "/reset") {
    config = {};
    scripted = [];
    requests = [];
  } else {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(answer));
});

await server.start(0, "127.0.0.1");
await new Promise((resolve) => control.listen(0, "127.0.0.1", resolve));
const tokenPort = server.address().port;
const controlPort = control.address().port;
process.stdout.write(
  JSON.stringify({
    token_url: `http://127.0.0.1:${tokenPort}/token`,
    control: `http://127.0.0.1:${controlPort}`,
  }) + "\n",
);

async function stop() {
  control.close();
  await server.stop();
  process.exit(0);
}
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
