// An echo server on Node's ws, for the interop tests: node echo_server.js deflate|none
// Prints "listening on PORT EXTENSIONS" once it listens on 127.0.0.1; echoes every message
// with its type (text or binary), and prefixes nothing.
const { WebSocketServer } = require("ws");

const deflate = process.argv[2] === "deflate";
const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: deflate, maxPayload: 4 * 1024 * 1024 });
server.on("connection", (socket) => {
  socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
});
server.on("listening", () => {
  console.log(`listening on ${server.address().port} ${deflate ? "deflate" : "none"}`);
});
