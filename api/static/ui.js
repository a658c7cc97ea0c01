// Evidence store review UI: small progressive enhancements. Every page works without this
// file; nothing here decides access or verifies anything (the server does both).
"use strict";

(function () {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable]") !== null;
  }

  function secondsText(t) {
    return (Math.round(t * 10) / 10).toFixed(1);
  }

  // -- the player --------------------------------------------------------------------------

  const video = $("#video");
  const bmAt = $("#bm-at");
  const bmNote = $("#bm-note");

  if (video) {
    if (video.hasAttribute("data-autoplay")) {
      // The reason was just given: start playing. If the browser's autoplay policy says no,
      // the controls are there and nothing is lost.
      const started = video.play();
      if (started && started.catch) started.catch(() => {});
    }
    // The player is sent to a viewing URL that serves for 15 minutes (evidence/viewings.py);
    // a longer review outlives it. On an error, open a new viewing at the same place (the
    // page's own stream address checks access again), at most once a minute; then say so.
    const source = video.getAttribute("src");
    let renewedAt = 0;
    video.addEventListener("error", () => {
      if (source && Date.now() - renewedAt > 60000) {
        renewedAt = Date.now();
        const at = video.currentTime;
        const playing = !video.paused;
        video.src = source;
        video.currentTime = at;
        if (playing) {
          const again = video.play();
          if (again && again.catch) again.catch(() => {});
        }
        return;
      }
      const box = document.createElement("p");
      box.className = "flash flash--error";
      box.setAttribute("role", "alert");
      box.textContent = "The footage could not be played. Your session may have ended: reload the page.";
      video.closest(".player").prepend(box);
    });
    if (bmAt) {
      video.addEventListener("timeupdate", () => {
        if (document.activeElement !== bmAt && !bmAt.dataset.edited) {
          bmAt.value = secondsText(video.currentTime);
        }
      });
      bmAt.addEventListener("input", () => { bmAt.dataset.edited = "1"; });
    }
    const frame = 1 / 30;
    document.addEventListener("keydown", (ev) => {
      if (ev.altKey || ev.ctrlKey || ev.metaKey || typing(ev.target)) return;
      switch (ev.key.toLowerCase()) {
        case "k":
          video.paused ? video.play() : video.pause();
          break;
        case "j":
          video.currentTime = Math.max(0, video.currentTime - 5);
          break;
        case "l":
          video.currentTime = Math.min(video.duration || Infinity, video.currentTime + 5);
          break;
        case ",":
          video.pause();
          video.currentTime = Math.max(0, video.currentTime - frame);
          break;
        case ".":
          video.pause();
          video.currentTime = video.currentTime + frame;
          break;
        case "b":
          if (!bmNote) return;
          video.pause();
          if (bmAt) { bmAt.value = secondsText(video.currentTime); delete bmAt.dataset.edited; }
          bmNote.focus();
          break;
        default:
          return;
      }
      ev.preventDefault();
    });
  }

  const now = $(".js-bm-now");
  if (now && video && bmAt) {
    now.addEventListener("click", () => {
      bmAt.value = secondsText(video.currentTime);
      delete bmAt.dataset.edited;
      bmNote && bmNote.focus();
    });
  }

  $$(".js-seek").forEach((btn) => {
    btn.addEventListener("click", () => {
      if (!video) return;
      video.currentTime = Number(btn.dataset.seekMs) / 1000;
      video.play();
      video.focus();
    });
  });

  // -- copy buttons (hashes, a new device's key) --------------------------------------------

  if (navigator.clipboard) {
    $$(".js-copy").forEach((btn) => {
      const label = btn.textContent;
      btn.hidden = false;
      btn.addEventListener("click", async () => {
        try {
          await navigator.clipboard.writeText(btn.dataset.copy);
          btn.textContent = "Copied";
        } catch (e) {
          btn.textContent = "Copy failed";
        }
        setTimeout(() => { btn.textContent = label; }, 1600);
      });
    });
  }

  // -- search: on a phone, the filters beyond free text fold away until asked for -----------

  const filters = $(".js-filters");
  const toggle = $(".js-filter-toggle");
  if (filters && toggle && window.matchMedia) {
    const phone = window.matchMedia("(max-width: 640px)");
    const set = (open) => {
      filters.classList.toggle("is-collapsed", !open);
      toggle.setAttribute("aria-expanded", String(open));
    };
    toggle.hidden = false;
    toggle.addEventListener("click", () => set(filters.classList.contains("is-collapsed")));
    set(!phone.matches || Number(toggle.dataset.active) > 0);
  }

  // -- search: select clips to add to a case ------------------------------------------------

  const all = $(".js-sel-all");
  const boxes = $$(".js-sel");
  const count = $(".js-selected-count");
  function updateCount() {
    const n = boxes.filter((b) => b.checked).length;
    if (count) count.textContent = n ? `${n} clip${n === 1 ? "" : "s"}` : "";
    if (all) {
      all.checked = n > 0 && n === boxes.length;
      all.indeterminate = n > 0 && n < boxes.length;
    }
  }
  if (all) {
    all.addEventListener("change", () => {
      boxes.forEach((b) => { b.checked = all.checked; });
      updateCount();
    });
  }
  boxes.forEach((b) => b.addEventListener("change", updateCount));
  updateCount();

  // -- case page: a court bundle being built shows its progress; reload once it is done --------

  const building = $$("tr[data-status-url]");
  if (building.length) {
    const poll = async () => {
      for (const row of building) {
        try {
          const r = await fetch(row.dataset.statusUrl, { credentials: "same-origin", cache: "no-store" });
          if (!r.ok) return;  // signed out, or the share ended: the next page load says so
          const b = await r.json();
          if (b.state !== "queued" && b.state !== "building") {
            window.location.reload();
            return;
          }
          const bar = $("progress", row);
          const pct = $("[data-progress]", row);
          const state = $("[data-bundle-state]", row);
          if (bar) bar.value = b.progress;
          if (pct) pct.textContent = `${b.progress}%`;
          if (state) state.textContent = b.state.charAt(0).toUpperCase() + b.state.slice(1);
        } catch (e) {
          return;
        }
      }
      setTimeout(poll, 1500);
    };
    setTimeout(poll, 1500);
  }
})();
