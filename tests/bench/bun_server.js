// The benchmark's Bun peer (tests/bench/README.md): echo and broadcast on
// Bun.serve, whose WebSockets are uWebSockets', with its pub/sub, TLS
// and permessage-deflate.
//
//   bun bun_server.js --port PORT [--host 127.0.0.1]
//       [--tls-cert FILE --tls-key FILE] [--deflate]
//
//   /echo...       every message goes back to its sender
//   /broadcast...  every client subscribes to one topic; every message
//                  received is published to it, so that every client, its
//                  sender included, gets it (gatewayd's broadcast room)
//   anything else  400
//
// --deflate turns perMessageDeflate on (Bun then agrees to
// permessage-deflate with both no_context_takeover parameters and a
// shared compressor); without it no extension is agreed.  The limits are
// gatewayd's defaults: messages up to 1 MiB, and up to 1 MiB queued per
// client (a client past it is closed, not fed).  No idle timeout, as
// gatewayd sends pings only after 30 s.  It runs until SIGTERM or SIGINT.

const TOPIC = "room";
const MAX_MESSAGE = 1 << 20;
const BACKPRESSURE = 1 << 20;

function parseArgs(argv) {
    const opts = { host: "127.0.0.1", port: 0, cert: null, key: null,
                   deflate: false };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const value = () => {
            if (i + 1 >= argv.length)
                usage(`${a} needs a value`);
            return argv[++i];
        };
        if (a === "--port") opts.port = Number(value());
        else if (a === "--host") opts.host = value();
        else if (a === "--tls-cert") opts.cert = value();
        else if (a === "--tls-key") opts.key = value();
        else if (a === "--deflate") opts.deflate = true;
        else usage(`unknown option ${a}`);
    }
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535)
        usage("--port PORT is required");
    if ((opts.cert === null) !== (opts.key === null))
        usage("--tls-cert and --tls-key go together");
    return opts;
}

function usage(why) {
    console.error(`bun_server.js: ${why}\nusage: bun bun_server.js --port ` +
                  `PORT [--host ADDR] [--tls-cert FILE --tls-key FILE] ` +
                  `[--deflate]`);
    process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));

const server = Bun.serve({
    hostname: opts.host,
    port: opts.port,
    // Bun.file() reads the PEM files when the server starts.
    tls: opts.cert === null ? undefined :
        { cert: Bun.file(opts.cert), key: Bun.file(opts.key) },
    fetch(req, srv) {
        const path = new URL(req.url).pathname;
        const broadcast = path.startsWith("/broadcast");
        if (!broadcast && !path.startsWith("/echo"))
            return new Response("no such room\n", { status: 400 });
        if (srv.upgrade(req, { data: { broadcast } }))
            return undefined;
        return new Response("a WebSocket handshake was expected\n",
                            { status: 400 });
    },
    websocket: {
        perMessageDeflate: opts.deflate,
        maxPayloadLength: MAX_MESSAGE,
        backpressureLimit: BACKPRESSURE,
        closeOnBackpressureLimit: true,
        idleTimeout: 0,
        sendPings: false,
        open(ws) {
            if (ws.data.broadcast)
                ws.subscribe(TOPIC);
        },
        // ws.send compresses only when its compress flag says so (the
        // echo went uncompressed without it): with --deflate, set it on
        // both, as gatewayd compresses whatever is over
        // compression_min_size (128 bytes).
        message(ws, message) {
            if (ws.data.broadcast)
                server.publish(TOPIC, message, opts.deflate);  // sender too
            else
                ws.send(message, opts.deflate);
        },
    },
});

// At once, as the other peers: the generator resets its connections at
// the end of a run anyway.
for (const sig of ["SIGTERM", "SIGINT"])
    process.on(sig, () => process.exit(0));
console.error(`bun_server.js: Bun ${Bun.version} on ` +
              `${opts.cert ? "wss" : "ws"}://${opts.host}:${server.port}, ` +
              `perMessageDeflate ${opts.deflate}`);
