// Drives @stomp/stompjs 7 against mirrormq's WebSocket ports, from Node (with the `ws`
// package) or from a page in Debian's headless Chromium (the library's UMD bundle, the
// browser's own WebSocket). tests/websocket.rs runs it:
//
//   node stomp.mjs node|browser ws://A[,ws://B] COUNT
//   STOMP_CA=ca.pem node stomp.mjs node wss://A COUNT
//
// It connects (offering v10.stomp, v11.stomp, v12.stomp), sends COUNT persistent messages
// to /queue/ws-ride one at a time, each with a receipt and a dedup-id (a send whose
// receipt a broker's death swallowed is sent again, to the next URL, and the broker drops
// the copy), printing "half" once half are receipted (the test kills the master then);
// then subscribes with client-individual acks, acks each message and prints one JSON line:
// the bodies received, the negotiated version, the URL it ended on, and reconnections.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const [mode, urlList, countText] = process.argv.slice(2);
const urls = urlList.split(",");
const count = Number(countText);

// The scenario: self-contained, so that it runs in Node and, as source, in the page.
async function ride(StompJs, urls, count, makeSocket, say) {
  let turn = 0;
  let connects = 0;
  let version = null;
  let connected = null;
  const client = new StompJs.Client({
    reconnectDelay: 100,
    heartbeatIncoming: 200,
    heartbeatOutgoing: 200,
    connectHeaders: { login: "admin", passcode: "admin" },
    webSocketFactory: () => makeSocket(urls[turn % urls.length]),
    onConnect: (frame) => {
      connects += 1;
      version = frame.headers.version;
      if (connected) connected();
    },
    onWebSocketClose: () => {
      turn += 1; // the next attempt goes to the next URL
    },
    onStompError: (frame) => say("ERROR " + frame.headers.message),
  });
  const up = () =>
    new Promise((resolve) => {
      if (client.connected) return resolve();
      connected = resolve;
    });
  client.activate();
  await up();
  for (let i = 0; i < count; i++) {
    for (;;) {
      await up();
      const receipt = `r-${i}-${connects}`;
      const got = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
      const lost = new Promise((resolve) => setTimeout(() => resolve("lost"), 3000));
      try {
        client.publish({
          destination: "/queue/ws-ride",
          body: `m${i}`,
          headers: { persistent: "true", receipt, "dedup-id": `ride-${i}` },
        });
      } catch (e) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      if ((await Promise.race([got, lost])) !== "lost") break;
    }
    if (i + 1 === Math.floor(count / 2)) say("half");
    await new Promise((r) => setTimeout(r, 20));
  }
  const bodies = [];
  await new Promise((resolve) => {
    client.subscribe(
      "/queue/ws-ride",
      (message) => {
        bodies.push(message.body);
        message.ack();
        if (new Set(bodies).size >= count) resolve();
      },
      { ack: "client-individual" },
    );
  });
  // Whatever comes after the last expected one would be a duplicate.
  await new Promise((r) => setTimeout(r, 300));
  const url = urls[turn % urls.length];
  await client.deactivate();
  return { bodies, version, connects, url };
}

function print(result) {
  console.log(JSON.stringify(result));
}

if (mode === "node") {
  const require = createRequire(import.meta.url);
  const StompJs = require("@stomp/stompjs");
  const WebSocket = require("ws");
  // STOMP_CA: the CA file a wss:// broker's certificate must chain to.
  const tls = process.env.STOMP_CA ? { ca: readFileSync(process.env.STOMP_CA) } : {};
  const socket = (url) => new WebSocket(url, ["v10.stomp", "v11.stomp", "v12.stomp"], tls);
  print(await ride(StompJs, urls, count, socket, (line) => console.log(line)));
  process.exit(0);
} else if (mode === "browser") {
  const { default: puppeteer } = await import("puppeteer-core");
  const browser = await puppeteer.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    // TRUST_SPKI: the one certificate a wss:// broker may present (its public key's
    // SHA-256, base64), as a browser trusting the CA would take it.
    args: ["--no-sandbox", "--disable-gpu",
      ...(process.env.TRUST_SPKI ? [`--ignore-certificate-errors-spki-list=${process.env.TRUST_SPKI}`] : [])],
  });
  try {
    const page = await browser.newPage();
    page.on("console", (message) => console.log(message.text()));
    await page.setContent("<!doctype html><title>stompjs</title>");
    const bundle = new URL("./node_modules/@stomp/stompjs/bundles/stomp.umd.min.js", import.meta.url);
    await page.addScriptTag({ content: readFileSync(bundle, "utf8") });
    const result = await page.evaluate(
      `(${ride.toString()})(StompJs, ${JSON.stringify(urls)}, ${count},
        (url) => new WebSocket(url, ["v10.stomp", "v11.stomp", "v12.stomp"]),
        (line) => console.log(line))`,
    );
    print(result);
  } finally {
    await browser.close();
  }
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
