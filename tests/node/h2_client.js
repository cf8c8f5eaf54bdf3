// An RFC 8441 client on Node's built-in http2 module, for the interop tests:
//   node h2_client.js https://127.0.0.1:PORT CA_FILE
// Opens three WebSockets as Extended CONNECT streams of one HTTP/2 session, frames the
// WebSocket exchange by hand (text, binary, 1 MiB), closes each with 1000, and prints one
// JSON line: what each stream saw.
const http2 = require("http2");
const crypto = require("crypto");
const fs = require("fs");

const [url, caFile] = process.argv.slice(2);

function frame(opcode, payload) {
  const length = payload.length;
  let header;
  if (length < 126) {
    header = Buffer.alloc(2);
    header[1] = 0x80 | length;
  } else if (length < 65536) {
    header = Buffer.alloc(4);
    header[1] = 0x80 | 126;
    header.writeUInt16BE(length, 2);
  } else {
    header = Buffer.alloc(10);
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  header[0] = 0x80 | opcode;
  const mask = crypto.randomBytes(4);
  const masked = Buffer.alloc(length);
  for (let i = 0; i < length; i++) masked[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([header, mask, masked]);
}

function parseFrames(buffer) {
  const frames = [];
  let offset = 0;
  while (buffer.length - offset >= 2) {
    const opcode = buffer[offset] & 0x0f;
    let length = buffer[offset + 1] & 0x7f;
    let start = offset + 2;
    if (length === 126) {
      if (buffer.length - offset < 4) break;
      length = buffer.readUInt16BE(offset + 2);
      start = offset + 4;
    } else if (length === 127) {
      if (buffer.length - offset < 10) break;
      length = Number(buffer.readBigUInt64BE(offset + 2));
      start = offset + 10;
    }
    if (buffer.length < start + length) break;
    frames.push({ opcode, payload: buffer.subarray(start, start + length) });
    offset = start + length;
  }
  return { frames, rest: buffer.subarray(offset) };
}

function exchange(session, path, opcode, payload) {
  return new Promise((resolve) => {
    const seen = { path, status: null, echoed: false, closeCode: null, ended: false, reset: null, protocol: null };
    const stream = session.request({
      ":method": "CONNECT",
      ":protocol": "websocket",
      ":scheme": "https",
      ":path": path,
      ":authority": new URL(url).host,
      "sec-websocket-version": "13",
      "sec-websocket-protocol": "chat",
    });
    let buffer = Buffer.alloc(0);
    stream.on("response", (headers) => {
      seen.status = headers[":status"];
      seen.protocol = headers["sec-websocket-protocol"] || null;
      stream.write(frame(opcode, payload));
    });
    stream.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      const parsed = parseFrames(buffer);
      buffer = parsed.rest;
      for (const f of parsed.frames) {
        if (f.opcode === opcode && Buffer.compare(f.payload, payload) === 0) {
          seen.echoed = true;
          const code = Buffer.alloc(2);
          code.writeUInt16BE(1000);
          stream.write(frame(0x8, code));
        } else if (f.opcode === 0x8) {
          seen.closeCode = f.payload.readUInt16BE(0);
        }
      }
    });
    stream.on("end", () => {
      seen.ended = true; // the server's END_STREAM: its side of the close
      stream.end();
    });
    stream.on("close", () => {
      seen.reset = stream.rstCode;
      resolve(seen);
    });
  });
}

const session = http2.connect(url, { ca: fs.readFileSync(caFile) });
session.on("error", (err) => {
  console.log(JSON.stringify({ error: String(err) }));
  process.exit(1);
});
session.on("remoteSettings", async (settings) => {
  if (session.started) return;
  session.started = true;
  const results = await Promise.all([
    exchange(session, "/echo/text", 0x1, Buffer.from("héllo from node", "utf8")),
    exchange(session, "/echo/binary", 0x2, crypto.randomBytes(256)),
    exchange(session, "/echo/big", 0x2, crypto.randomBytes(1024 * 1024)),
  ]);
  console.log(JSON.stringify({ enableConnectProtocol: settings.enableConnectProtocol, results }));
  session.close();
});
