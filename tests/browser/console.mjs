// Drives mirrormq's web console in headless Chromium as an operator would, for
// tests/console.rs. One run does one of two things:
//
//   node console.mjs purge URL USER PASSWORD QUEUE DEPTH [SCREENSHOT]
//     loads the console, waits until it shows a master and QUEUE with DEPTH messages,
//     (saves a screenshot), clicks the queue's purge button, accepts the confirmation,
//     and waits until the console shows QUEUE empty.
//   node console.mjs master URL USER PASSWORD QUEUE DEPTH
//     loads the console of a slave, waits until it shows the slave and QUEUE with DEPTH
//     messages, prints "slave shown", then, the page staying open while the test kills
//     the master, waits until the same page shows a master with the same depth.
//
// It prints what it saw as one JSON line and exits 0, or prints why and exits 1. For an
// https:// URL, TRUST_SPKI (the base64 SHA-256 of the broker certificate's public key)
// makes Chromium accept that one certificate, as a browser trusting the CA would.
import puppeteer from "puppeteer-core";

const [mode, url, username, password, queue, depthText, screenshot] = process.argv.slice(2);
const depth = String(Number(depthText));
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";
const patience = 20000;

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  // As root in CI there is no user namespace for the sandbox.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    ...(process.env.TRUST_SPKI ? [`--ignore-certificate-errors-spki-list=${process.env.TRUST_SPKI}`] : [])],
});
let failed = null;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 760 });
  await page.authenticate({ username, password });
  page.on("dialog", (dialog) => dialog.accept());
  await page.goto(url, { waitUntil: "load", timeout: patience });

  const roleIsMaster = () => page.waitForFunction(
    () => document.getElementById("role").classList.contains("master"),
    { timeout: patience, polling: 100 });
  const queueDepth = (want) => page.waitForFunction(
    (name, want) => {
      const row = [...document.querySelectorAll("#queues tbody tr")].find((tr) => tr.dataset.queue === name);
      return row && row.cells[1].textContent === want;
    },
    { timeout: patience, polling: 100 }, queue, want);

  const seen = {};
  if (mode === "master") {
    await page.waitForFunction(
      () => document.getElementById("role").classList.contains("slave"),
      { timeout: patience, polling: 100 });
    await queueDepth(depth);
    seen.was = await page.$eval("#role", (e) => e.textContent);
    console.log("slave shown");
  }
  await roleIsMaster();
  seen.role = await page.$eval("#role", (e) => e.textContent);
  await queueDepth(depth);
  seen.depth = depth;
  if (mode === "purge") {
    if (screenshot) await page.screenshot({ path: screenshot });
    await page.$eval(`#queues tbody tr[data-queue="${queue}"] button.danger`, (b) => b.click());
    await queueDepth("0");
    seen.depth_after_purge = "0";
  } else if (mode !== "master") {
    throw new Error(`unknown mode ${mode}`);
  }
  seen.summary = await page.$eval("#replication-summary", (e) => e.textContent);
  console.log(JSON.stringify(seen));
} catch (error) {
  failed = error;
} finally {
  await browser.close();
}
if (failed) {
  console.error(`console test failed: ${failed.message}`);
  process.exit(1);
}
