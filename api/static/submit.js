/* The public submission page (docs/public-submissions.md): sends the chosen files in chunks
   through the link's API. Resumable: before sending a file, and again after a dropped
   connection, it asks the server which chunks it holds and sends only the rest; a page
   opened again carries on with the same files chosen again. No inline code: the page's
   policy allows this file and nothing else. */
(function () {
  "use strict";
  var root = document.getElementById("submit");
  if (!root) return;
  var token = root.dataset.token;
  var api = "/api/v1/public/submissions/" + encodeURIComponent(token);
  var RETRIES = 4;  // connection drops in a row before the page gives up (and says so)
  var input = document.getElementById("files");
  var send = document.getElementById("send");
  var status = document.getElementById("status");
  var list = document.getElementById("progress");

  function say(text) { status.textContent = text; }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  function Problem(status, detail) { this.status = status; this.detail = detail; }

  async function call(method, path, body, raw) {
    var init = { method: method, headers: {}, credentials: "omit" };
    if (raw) { init.body = body; init.headers["Content-Type"] = "application/octet-stream"; }
    else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
    var r = await fetch(api + path, init);  // throws when the connection drops
    for (var waited = 0; r.status === 429 && waited < 5; waited++) {
      // Rate limited: wait as long as the server says, then ask again.
      var seconds = parseInt(r.headers.get("Retry-After"), 10) || 5;
      say("Waiting " + seconds + " s before sending more…");
      await sleep(seconds * 1000);
      r = await fetch(api + path, init);
    }
    var data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) throw new Problem(r.status, (data && data.detail) || r.statusText);
    return data;
  }

  function row(name) {
    var li = Array.prototype.find.call(list.children, function (el) { return el.dataset.fileName === name; });
    if (!li) { li = document.createElement("li"); li.dataset.fileName = name; list.appendChild(li); }
    return li;
  }

  function show(name, state, text, fraction) {
    var li = row(name);
    li.dataset.state = state;
    li.textContent = name + ": " + text;
    if (fraction !== undefined) {
      var bar = document.createElement("progress");
      bar.max = 1; bar.value = fraction;
      li.appendChild(bar);
    }
  }

  // Retries a step while the connection is down; a problem the server answered is final.
  async function persist(step) {
    for (var attempt = 0; ; attempt++) {
      try { return await step(); }
      catch (e) {
        if (e instanceof Problem || attempt >= RETRIES) throw e;
        say("Connection lost; trying again…");
        await sleep(Math.min(4000, 500 * Math.pow(2, attempt)));
      }
    }
  }

  async function sendFile(file, known) {
    var entry = known.find(function (f) {
      return f.filename === file.name && f.size === file.size && (f.state === "receiving" || f.state === "received");
    });
    if (!entry) entry = await persist(function () { return call("POST", "/files", { filename: file.name, size: file.size }); });
    var chunk = entry.chunk_size;
    var drops = 0;
    while (entry.state === "receiving") {
      var held = new Set(entry.received_chunks);
      for (var n = 0; n < entry.chunks; n++) {
        if (held.has(n)) continue;
        show(file.name, "sending", "sending", held.size / entry.chunks);
        var blob = file.slice(n * chunk, Math.min(file.size, (n + 1) * chunk));
        try {
          await call("PUT", "/files/" + entry.id + "/chunks/" + n, blob, true);
          held.add(n);
          drops = 0;
        } catch (e) {
          if (e instanceof Problem || ++drops > RETRIES) throw e;
          say("Connection lost; trying again…");
          // The connection dropped: ask the server what it holds, then carry on from there.
          await persist(async function () {
            await sleep(Math.min(4000, 500 * Math.pow(2, drops)));
            var link = await call("GET", "");
            entry = link.files.find(function (f) { return f.id === entry.id; }) || entry;
          });
          break;
        }
      }
      if (held.size === entry.chunks) {
        entry = await persist(function () { return call("POST", "/files/" + entry.id + "/complete"); });
      }
    }
    show(file.name, entry.state, entry.state === "received" ? "arrived" : entry.state);
    return entry;
  }

  send.addEventListener("click", async function () {
    var files = Array.prototype.slice.call(input.files || []);
    if (!files.length) { say("Choose at least one file first."); return; }
    send.disabled = true;
    var failed = 0;
    try {
      var link = await persist(function () { return call("GET", ""); });
      for (var i = 0; i < files.length; i++) {
        try {
          await sendFile(files[i], link.files);
        } catch (e) {
          if (!(e instanceof Problem)) throw e;
          failed++;  // this file only: the others go on
          show(files[i].name, "refused", "not sent: " + e.detail);
        }
      }
      if (failed === files.length) { say("None of your files could be sent."); send.disabled = false; return; }
      say("Finishing…");
      var description = document.getElementById("description").value;
      await persist(function () { return call("POST", "/finish", { description: description }); });
      window.location.assign("/submit/" + encodeURIComponent(token) + "/receipt");
    } catch (e) {
      send.disabled = false;
      if (e instanceof Problem) say("Could not send: " + e.detail);
      else say("The connection was lost. Open this link again and choose the same files: what already arrived is not sent again.");
    }
  });
})();
