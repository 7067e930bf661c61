// The topology page itself: one HTML document, no build step, no library. Underlay networks are
// columns of hosts with the router between them; each host shows, per overlay network, its sandbox
// with the bridge and the VTEP (VXLAN device, VNI, local address) and the containers on veths; the
// VXLAN tunnels between VTEPs of one VNI are drawn over it. Selecting a container shows its
// sandbox's neighbour and FDB entries, judged against gossip, and the gossip entry behind each.
// (Client code avoids backticks and dollar-brace: this file is one template string.)
export const UI_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>vxswarm topology</title>
<style>
  body { font: 13px/1.35 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  header { padding: 10px 16px; background: #1d2330; color: #fff; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 16px; margin: 0; }
  header .live { color: #8fd19e; } header .stale { color: #f0a0a0; }
  main { display: flex; gap: 12px; padding: 12px; align-items: flex-start; }
  #canvas { position: relative; flex: 1; }
  #tunnels { position: absolute; inset: 0; pointer-events: none; overflow: visible; }
  .underlays { display: flex; gap: 48px; align-items: flex-start; justify-content: center; }
  .underlay { border: 2px dashed #9aa5b8; border-radius: 10px; padding: 8px; background: #eef1f6; }
  .underlay > .title { font-weight: 600; color: #4b566b; margin-bottom: 6px; }
  .router { align-self: center; border: 2px solid #6b7a93; border-radius: 50%; width: 110px; height: 110px; display: flex;
            flex-direction: column; align-items: center; justify-content: center; background: #fff; text-align: center; }
  .host { background: #fff; border: 1px solid #c6cedb; border-radius: 8px; padding: 8px; margin-bottom: 10px; min-width: 300px; }
  .host > .title { font-weight: 600; } .host .sub { color: #667085; font-size: 12px; }
  .host.down { opacity: .6; border-color: #e19a9a; }
  .sandbox { border: 1px solid #7aa2d6; background: #f3f8ff; border-radius: 6px; padding: 6px; margin-top: 8px; }
  .sandbox > .title { color: #245193; font-weight: 600; }
  .dev { display: inline-block; border: 1px solid #94a3b8; border-radius: 4px; padding: 2px 6px; margin: 4px 4px 0 0; background: #fff; }
  .dev.vtep { border-color: #b45309; background: #fff7ed; }
  .dev.bad, .entry.bad { border-color: #dc2626; background: #fef2f2; color: #991b1b; }
  .containers { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 6px; }
  .container { border: 1px solid #16a34a; background: #f0fdf4; border-radius: 6px; padding: 4px 6px; cursor: pointer; }
  .container.selected { outline: 3px solid #2563eb; }
  .container .name { font-weight: 600; } .mono { font-family: ui-monospace, monospace; font-size: 12px; }
  aside { width: 420px; background: #fff; border: 1px solid #c6cedb; border-radius: 8px; padding: 10px; }
  aside h2 { font-size: 14px; margin: 4px 0 8px; }
  table { border-collapse: collapse; width: 100%; table-layout: fixed; } td { word-break: break-all; } td, th { text-align: left; padding: 2px 4px; border-bottom: 1px solid #eef0f3; vertical-align: top; }
  .ok { color: #15803d; } .missing, .wrong { color: #b91c1c; font-weight: 600; }
</style>
</head>
<body>
<header><h1>vxswarm overlay</h1><span id="status" class="stale">connecting…</span><span id="when"></span></header>
<main>
  <div id="canvas"><div id="drawing"></div><svg id="tunnels"></svg></div>
  <aside>
    <div id="details"><h2>Select a container</h2><p>Its sandbox's neighbour and FDB entries, and the gossip entries that made them, show here.</p></div>
    <h2>Gossip members</h2><div id="members"></div>
  </aside>
</main>
<script>
"use strict";
var topo = null, selected = null;
function h(tag, attrs, kids) {
  var e = document.createElement(tag);
  for (var k in attrs || {}) { if (k === "class") e.className = attrs[k]; else if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]); }
  (kids || []).forEach(function (c) { if (c) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
  return e;
}
function ipNum(ip) { return ip.split(".").reduce(function (a, o) { return a * 256 + Number(o); }, 0); }
function netOf(ip, prefix) {
  if (!prefix) return ip;
  var n = ipNum(ip), size = Math.pow(2, 32 - prefix), base = n - (n % size);
  return [base >>> 24 & 255, base >>> 16 & 255, base >>> 8 & 255, base & 255].join(".") + "/" + prefix;
}
function render() {
  var d = document.getElementById("drawing"); d.innerHTML = "";
  if (!topo) return;
  var groups = {}, order = [], gateways = {};
  topo.nodes.forEach(function (n) {
    var u = n.underlay, key = u ? netOf(u.ip, u.prefix) : "unknown underlay";
    if (!groups[key]) { groups[key] = []; order.push(key); }
    groups[key].push(n);
    if (u && u.gateway) gateways[u.gateway] = true;
  });
  var row = h("div", { class: "underlays" });
  order.forEach(function (key, i) {
    if (i > 0) row.appendChild(h("div", { class: "router", "data-router": "1" }, [h("b", { text: "router" }), h("span", { class: "mono", text: Object.keys(gateways).join(" ") })]));
    var col = h("div", { class: "underlay", "data-underlay": key }, [h("div", { class: "title", text: "underlay " + key })]);
    groups[key].forEach(function (n) { col.appendChild(hostBox(n)); });
    row.appendChild(col);
  });
  d.appendChild(row);
  renderMembers();
  renderDetails();
  requestAnimationFrame(drawTunnels);
}
function hostBox(n) {
  var u = n.underlay;
  var box = h("div", { class: "host" + (n.error ? " down" : ""), "data-host": n.node.hostname }, [
    h("div", { class: "title", text: n.node.hostname + (n.node.role ? " · " + n.node.role : "") }),
    h("div", { class: "sub mono", text: u ? u.device + " " + u.ip + "/" + u.prefix + " mtu " + u.mtu + (u.gateway ? " via " + u.gateway : "") : n.node.addr })
  ]);
  if (n.error) { box.appendChild(h("div", { class: "missing", text: "unreachable: " + n.error })); return box; }
  n.networks.forEach(function (net) {
    var sb = h("div", { class: "sandbox", "data-sandbox": net.sandbox, "data-network": net.name }, [h("div", { class: "title", text: net.name + " · sandbox " + net.sandbox + " · mtu " + net.mtu })]);
    net.subnets.forEach(function (s) {
      if (s.bridge) sb.appendChild(h("span", { class: "dev" + (s.bridge.up ? "" : " bad"), text: s.bridge.name + " " + s.gateway + " (" + s.subnet + ")" }));
      if (s.vxlan) sb.appendChild(h("span", { class: "dev vtep" + (s.vxlan.vni === s.wantVni && s.vxlan.up ? "" : " bad"), "data-vtep": s.vxlan.local || (u && u.ip) || "", "data-vni": String(s.vxlan.vni),
        text: s.vxlan.name + " VNI " + s.vxlan.vni + " · VTEP " + (s.vxlan.local || (u && u.ip) || "?") + ":" + s.vxlan.port }));
      else sb.appendChild(h("span", { class: "dev bad", text: "no VXLAN device for " + s.subnet }));
    });
    var cs = h("div", { class: "containers" });
    net.endpoints.forEach(function (ep) {
      var c = n.containers.find(function (k) { return k.netns === ep.netns; });
      var name = c ? c.name : ep.netns;
      var id = n.node.hostname + "/" + net.id + "/" + ep.id;
      var el = h("div", { class: "container" + (selected === id ? " selected" : ""), "data-container": name, "data-ip": ep.ip }, [
        h("div", { class: "name", text: name }),
        h("div", { class: "mono", text: ep.ifname + " " + ep.ip + " · " + ep.mac }),
        h("div", { class: "mono" + (ep.present && ep.vethMaster ? "" : " missing"), text: ep.veth + (ep.vethMaster ? " → " + ep.vethMaster : " (not plugged)") })
      ]);
      el.onclick = function () { selected = selected === id ? null : id; render(); };
      cs.appendChild(el);
    });
    sb.appendChild(cs);
    box.appendChild(sb);
  });
  return box;
}
function drawTunnels() {
  var svg = document.getElementById("tunnels"), canvas = document.getElementById("canvas").getBoundingClientRect();
  svg.innerHTML = ""; svg.setAttribute("width", canvas.width); svg.setAttribute("height", canvas.height);
  var byVni = {};
  document.querySelectorAll("[data-vni]").forEach(function (e) { (byVni[e.getAttribute("data-vni")] = byVni[e.getAttribute("data-vni")] || []).push(e); });
  Object.keys(byVni).forEach(function (vni) {
    var ends = byVni[vni];
    for (var i = 0; i < ends.length; i++) for (var j = i + 1; j < ends.length; j++) {
      var a = ends[i].getBoundingClientRect(), b = ends[j].getBoundingClientRect();
      if (b.right < a.left) { var x = a; a = b; b = x; }
      // edge to edge when side by side, centre to centre when one is above the other
      var side = a.right < b.left;
      var line = document.createElementNS("http://www.w3.org/2000/svg", "line");
      line.setAttribute("x1", (side ? a.right : a.left + a.width / 2) - canvas.left); line.setAttribute("y1", a.top - canvas.top + a.height / 2);
      line.setAttribute("x2", (side ? b.left : b.left + b.width / 2) - canvas.left); line.setAttribute("y2", b.top - canvas.top + b.height / 2);
      line.setAttribute("stroke", "#b45309"); line.setAttribute("stroke-width", "2"); line.setAttribute("stroke-dasharray", "6 4");
      line.setAttribute("data-tunnel", vni);
      var t = document.createElementNS("http://www.w3.org/2000/svg", "title"); t.textContent = "VXLAN VNI " + vni + ": " + ends[i].getAttribute("data-vtep") + " ⇄ " + ends[j].getAttribute("data-vtep");
      line.appendChild(t); svg.appendChild(line);
    }
  });
}
function renderMembers() {
  var m = document.getElementById("members"); m.innerHTML = "";
  var first = topo.nodes.find(function (n) { return !n.error; });
  if (!first) return;
  var t = h("table", {}, [h("tr", {}, [h("th", { text: "node" }), h("th", { text: "address" }), h("th", { text: "state" })])]);
  first.members.forEach(function (x) { t.appendChild(h("tr", { "data-member": x.hostname }, [h("td", { text: x.hostname }), h("td", { class: "mono", text: x.addr }), h("td", { class: x.state === "alive" ? "ok" : "missing", text: x.state })])); });
  m.appendChild(t);
}
function renderDetails() {
  var d = document.getElementById("details");
  if (!selected) { d.innerHTML = "<h2>Select a container</h2><p>Its sandbox's neighbour and FDB entries, and the gossip entries that made them, show here.</p>"; return; }
  var parts = selected.split("/"), node = topo.nodes.find(function (n) { return n.node.hostname === parts[0]; });
  var net = node && node.networks && node.networks.find(function (x) { return x.id === parts[1]; });
  var ep = net && net.endpoints.find(function (x) { return x.id === parts[2]; });
  if (!ep) { selected = null; return renderDetails(); }
  var c = node.containers.find(function (k) { return k.netns === ep.netns; });
  d.innerHTML = "";
  d.appendChild(h("h2", { text: (c ? c.name : ep.netns) + " on " + node.node.hostname }));
  d.appendChild(h("div", { class: "mono", text: ep.ifname + " " + ep.ip + " mac " + ep.mac + " mtu " + ep.mtu + " · netns " + ep.netns }));
  d.appendChild(h("p", { text: "The sandbox " + net.sandbox + " of " + net.name + " reaches the other containers through these entries:" }));
  var t = h("table", { "data-entries": "1" }, [h("tr", {}, [h("th", { text: "neighbour (IP → MAC)" }), h("th", { text: "FDB (MAC → VTEP)" }), h("th", { text: "gossip entry" })])]);
  net.peers.forEach(function (p) {
    var src = net.sources[p.ip];
    t.appendChild(h("tr", { "data-peer": p.ip }, [
      h("td", { class: "mono" }, [p.ip + " → " + p.mac + " ", h("span", { class: p.neigh, text: p.neigh })]),
      h("td", { class: "mono" }, [p.mac + " → " + p.vtep + " ", h("span", { class: p.fdb, text: p.fdb })]),
      h("td", { class: "mono", text: src ? "overlay_peer_table/" + src.key.slice(0, 12) + " by " + src.ownerHost : "?" })
    ]));
  });
  if (!net.peers.length) t.appendChild(h("tr", {}, [h("td", { text: "no remote peers: every other container of " + net.name + " is on this node" })]));
  d.appendChild(t);
  if (net.stale.length) {
    d.appendChild(h("p", { class: "missing", text: "Entries no gossip entry accounts for (stale):" }));
    net.stale.forEach(function (s) { d.appendChild(h("div", { class: "mono entry bad", text: s.kind + " " + s.key + " → " + s.value + " on " + s.device })); });
  }
}
function set(t) { topo = t; document.getElementById("when").textContent = "read " + new Date(t.at).toLocaleTimeString(); render(); }
fetch("/ui/topology").then(function (r) { return r.json(); }).then(set);
var es = new EventSource("/ui/events");
es.addEventListener("topology", function (e) { set(JSON.parse(e.data)); });
es.onopen = function () { var s = document.getElementById("status"); s.textContent = "live"; s.className = "live"; };
es.onerror = function () { var s = document.getElementById("status"); s.textContent = "reconnecting…"; s.className = "stale"; };
window.addEventListener("resize", drawTunnels);
</script>
</body>
</html>
`;
