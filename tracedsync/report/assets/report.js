(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("tracedsync-data").textContent);
  var S = data.strings, bars = data.bars, threads = data.threads;
  var tl = document.getElementById("tl"), rowsEl = document.getElementById("rows");
  var axis = document.getElementById("axis"), tip = document.getElementById("tip");
  var rangeEl = document.getElementById("range");
  var LABEL = 200, LANE = 14;

  function fmt(us) {
    var a = Math.abs(us);
    if (a < 1) return (us * 1000).toFixed(0) + " ns";
    if (a < 1000) return us.toFixed(1) + " \u00b5s";
    if (a < 1e6) return (us / 1e3).toFixed(1) + " ms";
    if (a < 6e8) return (us / 1e6).toFixed(2) + " s";
    return (us / 6e7).toFixed(1) + " min";
  }
  function str(i) { return i >= 0 ? S[i] : null; }
  // Control characters and bidi overrides made visible, as the tables show
  // them (tracedsync._format.clean).
  var CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
  function show(text) {
    return String(text).replace(CONTROL, function (c) {
      var n = c.charCodeAt(0);
      return n > 0xff ? "\\u" + n.toString(16).padStart(4, "0")
        : "\\x" + n.toString(16).padStart(2, "0");
    });
  }

  var lo = Infinity, hi = -Infinity;
  bars.forEach(function (b) { lo = Math.min(lo, b[1]); hi = Math.max(hi, b[1] + b[2]); });
  if (!bars.length) { lo = 0; hi = 1000; }
  if (hi - lo < 1) { hi = lo + 1; }
  var pad = (hi - lo) * 0.02, full0 = lo - pad, full1 = hi + pad;
  var v0 = full0, v1 = full1;

  var perThread = threads.map(function () { return []; });
  bars.forEach(function (b, i) { perThread[b[0]].push(i); });
  var els = new Array(bars.length);
  var tracks = [];
  threads.forEach(function (t, ti) {
    var row = document.createElement("div");
    row.className = "row";
    var label = document.createElement("div");
    label.className = "label";
    label.textContent = show(t.name);
    label.title = show(t.name) + (t.pid != null ? "  (pid " + t.pid + ", thread " + t.id + ")" : "");
    var track = document.createElement("div");
    track.className = "track";
    var order = perThread[ti].sort(function (a, b) {
      return bars[a][1] - bars[b][1] || bars[b][2] - bars[a][2];
    });
    var laneEnds = [];
    order.forEach(function (i) {
      var b = bars[i], lane = 0;
      while (lane < laneEnds.length && laneEnds[lane] > b[1]) lane++;
      laneEnds[lane] = b[1] + b[2];
      var el = document.createElement("div");
      var wait = b[3] === 1;
      el.className = "bar " + (wait ? "wait" : "hold") +
        (str(b[10]) === "timeout" ? " timeout" : "");
      el.style.top = (3 + lane * LANE) + "px";
      el.setAttribute("data-span-id", S[b[11]]);
      el.setAttribute("data-type", wait ? "wait" : "hold");
      el.setAttribute("data-primitive", S[b[5]]);
      el.setAttribute("data-index", String(i));
      track.appendChild(el);
      els[i] = el;
    });
    track.style.height = (Math.max(1, laneEnds.length) * LANE + 6) + "px";
    row.appendChild(label);
    row.appendChild(track);
    rowsEl.appendChild(row);
    tracks.push(track);
  });
  if (!threads.length) {
    var empty = document.createElement("div");
    empty.className = "label";
    empty.textContent = "no wait or hold spans";
    rowsEl.appendChild(empty);
  }

  function width() { return Math.max(50, tl.clientWidth - LABEL); }

  function niceStep(span) {
    var raw = span / 8, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
  }

  var pending = false;
  function render() {
    pending = false;
    var w = width(), k = w / (v1 - v0);
    for (var i = 0; i < bars.length; i++) {
      var b = bars[i], el = els[i];
      var x0 = (b[1] - v0) * k, x1 = (b[1] + b[2] - v0) * k;
      if (x1 < 0 || x0 > w) { el.style.display = "none"; continue; }
      el.style.display = "";
      x0 = Math.max(x0, -2);
      x1 = Math.min(x1, w + 2);
      el.style.left = x0.toFixed(1) + "px";
      el.style.width = Math.max(1, x1 - x0).toFixed(1) + "px";
    }
    while (axis.firstChild) axis.removeChild(axis.firstChild);
    var step = niceStep(v1 - v0);
    for (var t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      var tick = document.createElement("div");
      tick.className = "tick";
      tick.style.left = (LABEL + (t - v0) * k).toFixed(1) + "px";
      tick.textContent = (t >= 0 ? "+" : "") + fmt(t);
      axis.appendChild(tick);
    }
    rangeEl.textContent = "+" + fmt(Math.max(0, v0)) + " \u2013 +" + fmt(v1) +
      " (" + fmt(v1 - v0) + " shown)";
    tl.setAttribute("data-view", v0.toFixed(3) + " " + v1.toFixed(3));
  }
  function schedule() { if (!pending) { pending = true; requestAnimationFrame(render); } }

  function setView(a, b) {
    var span = Math.min(Math.max(b - a, 0.01), full1 - full0);
    if (a < full0) a = full0;
    if (a + span > full1) a = full1 - span;
    v0 = a; v1 = a + span;
    schedule();
  }
  function zoom(factor, at) {
    if (at === undefined) at = (v0 + v1) / 2;
    setView(at - (at - v0) * factor, at + (v1 - at) * factor);
  }
  function timeAt(clientX) {
    var rect = tl.getBoundingClientRect();
    return v0 + (clientX - rect.left - LABEL) / width() * (v1 - v0);
  }

  tl.addEventListener("wheel", function (e) {
    e.preventDefault();
    if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      var d = (e.deltaX || e.deltaY) / width() * (v1 - v0);
      setView(v0 + d, v1 + d);
    } else {
      zoom(Math.exp(e.deltaY * 0.0015), timeAt(e.clientX));
    }
  }, { passive: false });

  var drag = null;
  tl.addEventListener("mousedown", function (e) {
    if (e.button !== 0) return;
    drag = { x: e.clientX, v0: v0, v1: v1 };
    tl.classList.add("dragging");
  });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    var d = (drag.x - e.clientX) / width() * (drag.v1 - drag.v0);
    setView(drag.v0 + d, drag.v1 + d);
  });
  window.addEventListener("mouseup", function () {
    drag = null;
    tl.classList.remove("dragging");
  });
  tl.addEventListener("keydown", function (e) {
    var span = v1 - v0;
    if (e.key === "+" || e.key === "=") zoom(0.5);
    else if (e.key === "-") zoom(2);
    else if (e.key === "0") setView(full0, full1);
    else if (e.key === "ArrowLeft") setView(v0 - span / 10, v1 - span / 10);
    else if (e.key === "ArrowRight") setView(v0 + span / 10, v1 + span / 10);
    else return;
    e.preventDefault();
  });
  document.getElementById("zoom-in").addEventListener("click", function () { zoom(0.5); });
  document.getElementById("zoom-out").addEventListener("click", function () { zoom(2); });
  document.getElementById("zoom-reset").addEventListener("click", function () {
    setView(full0, full1);
  });
  window.addEventListener("resize", schedule);

  function line(text, cls) {
    var d = document.createElement("div");
    if (cls) d.className = cls;
    d.textContent = show(text);
    tip.appendChild(d);
  }
  function showTip(i, e) {
    var b = bars[i], wait = b[3] === 1;
    while (tip.firstChild) tip.removeChild(tip.firstChild);
    line((wait ? "wait" : "hold") + " \u00b7 " + S[b[4]] + " " + S[b[5]], "t");
    line("duration " + fmt(b[2]) + (str(b[10]) ? " \u00b7 " + str(b[10]) : ""));
    line("thread " + threads[b[0]].name);
    line("at " + S[b[6]] + (S[b[7]] ? " in " + S[b[7]] : ""));
    if (wait && (str(b[8]) || str(b[9]))) {
      line("holder " + (str(b[8]) || "?") + " at " + (str(b[9]) || "?"));
    }
    line("start +" + fmt(b[1]) + " \u00b7 span " + S[b[11]]);
    tip.hidden = false;
    moveTip(e);
  }
  function moveTip(e) {
    var x = e.clientX + 14, y = e.clientY + 14;
    var r = tip.getBoundingClientRect();
    if (x + r.width > window.innerWidth) x = Math.max(0, e.clientX - r.width - 14);
    if (y + r.height > window.innerHeight) y = Math.max(0, e.clientY - r.height - 14);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  rowsEl.addEventListener("mouseover", function (e) {
    var el = e.target.closest ? e.target.closest(".bar") : null;
    if (el) showTip(Number(el.getAttribute("data-index")), e);
  });
  rowsEl.addEventListener("mousemove", function (e) { if (!tip.hidden) moveTip(e); });
  rowsEl.addEventListener("mouseout", function (e) {
    var el = e.target.closest ? e.target.closest(".bar") : null;
    if (el) tip.hidden = true;
  });

  render();

  // -- the flame graph (icicle): wait time by stack, the outermost frame on
  // top; nodes are [parent, frame string, total ns, waits], parents first.
  var flame = data.flame, FS = flame.strings, nodes = flame.nodes;
  var flameEl = document.getElementById("flame-graph");
  var focusEl = document.getElementById("flame-focus");
  var FROW = 18;
  var kids = nodes.map(function () { return []; });
  var depth = new Array(nodes.length), deepest = 0;
  nodes.forEach(function (n, i) {
    depth[i] = n[0] >= 0 ? depth[n[0]] + 1 : 0;
    deepest = Math.max(deepest, depth[i]);
    if (n[0] >= 0) kids[n[0]].push(i);
  });
  var boxes = nodes.map(function (n, i) {
    var el = document.createElement("div");
    var name = FS[n[1]];
    el.className = "frame" + (i === 0 ? " root" : "") +
      (kids[i].length === 0 && i !== 0 ? " leaf" : "");
    el.style.top = (depth[i] * FROW) + "px";
    el.style.background = i === 0 ? "#d9d9d9" : colour(name);
    el.textContent = show(name);
    el.setAttribute("data-index", String(i));
    el.setAttribute("data-frame", name);
    el.setAttribute("data-value", String(n[2]));
    flameEl.appendChild(el);
    return el;
  });
  flameEl.style.height = ((deepest + 1) * FROW + 2) + "px";

  function colour(name) {
    var h = 0;
    for (var k = 0; k < name.length; k++) h = (h * 31 + name.charCodeAt(k)) | 0;
    h = Math.abs(h);
    return "hsl(" + (8 + h % 40) + ", " + (55 + h % 30) + "%, " + (62 + (h >> 5) % 14) + "%)";
  }

  var focus = 0;
  function layout() {
    var x0 = new Array(nodes.length), x1 = new Array(nodes.length);
    var inFocus = new Array(nodes.length);
    // The focused frame and its ancestors span the whole width.
    for (var a = focus; a >= 0; a = nodes[a][0]) { x0[a] = 0; x1[a] = 1; inFocus[a] = "up"; }
    inFocus[focus] = "in";
    // Children left-aligned inside their parent, in proportion to their totals.
    var order = [focus];
    while (order.length) {
      var p = order.shift(), at = x0[p], scale = (x1[p] - x0[p]) / Math.max(1, nodes[p][2]);
      kids[p].forEach(function (c) {
        x0[c] = at; at += nodes[c][2] * scale; x1[c] = at;
        inFocus[c] = "in";
        order.push(c);
      });
    }
    boxes.forEach(function (el, j) {
      if (!inFocus[j]) { el.style.display = "none"; return; }
      el.style.display = "";
      el.style.left = (x0[j] * 100).toFixed(4) + "%";
      el.style.width = ((x1[j] - x0[j]) * 100).toFixed(4) + "%";
      el.classList.toggle("up", inFocus[j] === "up" && j !== focus);
    });
    focusEl.textContent = focus === 0 ? "" : "zoomed into " + show(FS[nodes[focus][1]]);
    flameEl.setAttribute("data-focus", String(focus));
  }
  function flameTip(i, e) {
    var n = nodes[i], all = Math.max(1, nodes[0][2]);
    while (tip.firstChild) tip.removeChild(tip.firstChild);
    line(FS[n[1]], "t");
    line("waited " + fmt(n[2] / 1000) + " in all \u00b7 " + (100 * n[2] / all).toFixed(1) +
      "% of " + fmt(all / 1000));
    line(n[3] + (n[3] === 1 ? " wait" : " waits"));
    tip.hidden = false;
    moveTip(e);
  }
  flameEl.addEventListener("click", function (e) {
    var el = e.target.closest ? e.target.closest(".frame") : null;
    if (!el) return;
    focus = Number(el.getAttribute("data-index"));
    layout();
  });
  flameEl.addEventListener("mouseover", function (e) {
    var el = e.target.closest ? e.target.closest(".frame") : null;
    if (el) flameTip(Number(el.getAttribute("data-index")), e);
  });
  flameEl.addEventListener("mousemove", function (e) { if (!tip.hidden) moveTip(e); });
  flameEl.addEventListener("mouseout", function (e) {
    var el = e.target.closest ? e.target.closest(".frame") : null;
    if (el) tip.hidden = true;
  });
  document.getElementById("flame-reset").addEventListener("click", function () {
    focus = 0;
    layout();
  });
  if (nodes[0][2] === 0) {
    var none = document.createElement("div");
    none.className = "label";
    none.textContent = "no waits with stacks";
    flameEl.appendChild(none);
  }
  layout();
  document.body.setAttribute("data-ready", "1");
})();
