// Drives Debian's firefox-esr over WebDriver BiDi with puppeteer-core, for pytest
// (playwright/browsers/firefox.py). Playwright's own BiDi route fails on Firefox ESR 153
// (issue 18), puppeteer-core 24.x speaks it and runs on Node 20.
//
// Protocol: one JSON object a line. stdin carries requests {id, op, ...}; stdout carries
// replies {id, ok, value | error} and, unrequested, {event: "error", text} for every page
// error and console error. The first line out is {event: "launched"} (or the launch error).
//   open {url}                       a new page at url (closing the previous one)
//   evaluate {fn, arg}               (fn)(arg) in the page; fn is a function's source
//   wait {fn, arg, timeout_ms}       until (fn)(arg) is truthy in the page
//   upload {selector, path}          choose a file in an <input type=file>
//   reload {}                        reload the page
//   viewport {width, height, scale}  the page's viewport in CSS px and its device pixel ratio,
//                                    for this page and every page opened after it
//   screenshot {}                    the viewport as a PNG, base64
//   close {}                         close the browser and exit

import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const [executablePath = "/usr/bin/firefox-esr"] = process.argv.slice(2);
const write = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);

let browser;
try {
  browser = await puppeteer.launch({
    browser: "firefox",
    executablePath,
    headless: true,
    protocol: "webDriverBiDi",
    extraPrefsFirefox: {
      "media.navigator.streams.fake": true, // a synthetic camera, no device needed
      "media.navigator.permission.disabled": true, // nobody is there to click "Allow"
      "browser.shell.checkDefaultBrowser": false,
    },
  });
} catch (err) {
  write({ event: "launch_failed", error: String(err && err.message || err) });
  process.exit(1);
}
write({ event: "launched", version: await browser.version() });

let page = null;
let viewport = null; // puppeteer's default (800x600) until a viewport op
// A page function arrives as source text; wrap it so that BiDi calls it with its argument
// (script.callFunction: no eval inside the page, so the page's CSP does not apply).
const call = (fn) => new Function(`return (${fn});`)();

const ops = {
  async open({ url }) {
    if (page !== null) await page.close(); // one page at a time: its errors are the test's
    page = await browser.newPage();
    if (viewport !== null) await page.setViewport(viewport);
    page.on("pageerror", (err) => write({ event: "error", text: `pageerror: ${err.message}` }));
    page.on("console", (message) => {
      if (message.type() === "error") write({ event: "error", text: message.text() });
    });
    await page.goto(url, { waitUntil: "load" });
    return null;
  },
  async evaluate({ fn, arg }) {
    return await page.evaluate(call(fn), arg ?? null);
  },
  async wait({ fn, arg, timeout_ms }) {
    await page.waitForFunction(call(fn), { timeout: timeout_ms, polling: 100 }, arg ?? null);
    return null;
  },
  async upload({ selector, path }) {
    const input = await page.$(selector);
    if (input === null) throw new Error(`no element matches ${selector}`);
    await input.uploadFile(path);
    return null;
  },
  async reload() {
    await page.reload({ waitUntil: "load" });
    return null;
  },
  async viewport({ width, height, scale }) {
    viewport = { width, height, deviceScaleFactor: scale };
    if (page !== null) await page.setViewport(viewport);
    return null;
  },
  async screenshot() {
    return await page.screenshot({ encoding: "base64", type: "png" });
  },
  async close() {
    await browser.close();
    return null;
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const request = JSON.parse(line);
  const op = ops[request.op];
  try {
    if (!op) throw new Error(`unknown op ${JSON.stringify(request.op)}; expected one of ${Object.keys(ops)}`);
    write({ id: request.id, ok: true, value: (await op(request)) ?? null }); // undefined: null
  } catch (err) {
    write({ id: request.id, ok: false, error: String(err && err.message || err) });
  }
  if (request.op === "close") break;
}
if (browser.connected) await browser.close();
process.exit(0);
