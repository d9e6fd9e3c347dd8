"""The console's stylesheet and script, served by the console itself: no CDN, nothing fetched
from outside (a duty phone on the building's network may have no internet at all)."""

from __future__ import annotations

import hashlib

CSS = """\
:root{--red:#c62828;--orange:#ef6c00;--yellow:#f9a825;--blue:#1565c0;--ink:#1b1b1b;
--green:#2e7d32;--muted:#5f6368;--line:#dadce0;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC",
"Microsoft YaHei",sans-serif;color:var(--ink);background:var(--bg)}
header{background:#263238;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;
gap:.5rem 1rem;align-items:center}
header a,header button{color:#fff}
header .brand{font-weight:600;margin-right:auto}
nav{display:flex;flex-wrap:wrap;gap:.25rem .9rem}
nav a{text-decoration:none;padding:.2rem 0}
nav a.on{border-bottom:2px solid #fff}
header form{display:inline;margin:0}
header button{background:none;border:1px solid #90a4ae;border-radius:4px;padding:.15rem .5rem;
font:inherit;cursor:pointer}
main{max-width:60rem;margin:0 auto;padding:1rem}
h1{font-size:1.35rem;margin:.2rem 0 1rem}
h2{font-size:1.1rem;margin:1.2rem 0 .5rem}
.flash{background:#e8f5e9;border:1px solid #a5d6a7;padding:.5rem .8rem;border-radius:6px}
.error{background:#ffebee;border:1px solid #ef9a9a;padding:.5rem .8rem;border-radius:6px}
.counts{display:flex;flex-wrap:wrap;gap:.5rem;margin-bottom:.5rem}
.badge{display:inline-block;color:#fff;border-radius:4px;padding:.05rem .5rem;font-size:.9rem}
.g-red .badge,.badge.g-red{background:var(--red)}
.g-orange .badge,.badge.g-orange{background:var(--orange)}
.g-yellow .badge,.badge.g-yellow{background:var(--yellow);color:#222}
.g-blue .badge,.badge.g-blue{background:var(--blue)}
.alarm{background:#fff;border:1px solid var(--line);border-left:8px solid var(--line);
border-radius:6px;padding:.6rem .8rem;margin:.5rem 0}
.alarm.g-red{border-left-color:var(--red)}
.alarm.g-orange{border-left-color:var(--orange)}
.alarm.g-yellow{border-left-color:var(--yellow)}
.alarm.g-blue{border-left-color:var(--blue)}
.alarm.s-active{box-shadow:0 0 0 1px rgba(198,40,40,.15)}
.alarm .head{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center;font-size:.9rem}
.alarm .state{font-weight:600}
.alarm.s-acknowledged .state,.alarm.s-closed .state{color:var(--muted);font-weight:400}
.alarm .text{margin:.35rem 0;font-size:1.05rem}
.alarm .meta{color:var(--muted);font-size:.9rem;margin:.2rem 0}
.overdue{color:var(--red);font-weight:600}
.round{background:#fff;border:1px solid var(--line);border-left:8px solid var(--line);
border-radius:6px;padding:.6rem .8rem;margin:.5rem 0}
.round .head{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center;font-size:.9rem}
.round .text{margin:.35rem 0;font-size:1.05rem}
.round .meta{color:var(--muted);font-size:.9rem;margin:.2rem 0}
.round.r-ok{border-left-color:var(--green)}
.round.r-late{border-left-color:var(--yellow)}
.round.r-out_of_order{border-left-color:var(--orange)}
.round.r-missed{border-left-color:var(--red)}
.badge.r-ok,.badge.c-on_time{background:var(--green)}
.badge.r-late,.badge.c-late{background:var(--yellow);color:#222}
.badge.r-out_of_order,.badge.c-out_of_order{background:var(--orange)}
.badge.r-missed,.badge.c-missed{background:var(--red)}
.badge.c-pending,.badge.c-skipped{background:#78909c}
.cps{list-style:none;margin:.4rem 0 0;padding:0}
.cps li{border-top:1px solid var(--line);padding:.3rem 0;font-size:.92rem;
overflow-wrap:anywhere}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin-top:.4rem}
.actions form{margin:0}
button.primary,input[type=submit]{background:#263238;color:#fff;border:0;border-radius:6px;
padding:.45rem 1rem;font:inherit;cursor:pointer;min-height:2.5rem}
input,select{font:inherit;padding:.35rem .5rem;border:1px solid #b0bec5;border-radius:6px;
min-height:2.5rem;max-width:100%}
label{display:block;margin:.5rem 0 .2rem}
.box{background:#fff;border:1px solid var(--line);border-radius:6px;padding:.8rem 1rem;
margin:.8rem 0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.92rem}
th,td{border-bottom:1px solid var(--line);padding:.35rem .5rem;text-align:left;
vertical-align:top}
th{background:#eceff1}
.wide{overflow-x:auto}
.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-end}
.filters label{margin:0}
.muted{color:var(--muted)}
.login{max-width:22rem;margin:3rem auto}
.login input{width:100%}
@media (max-width:40rem){main{padding:.6rem}header{padding:.5rem .6rem}
th,td{padding:.3rem}.hide-narrow{display:none}}
"""

# Submits a signed link's confirmation at once (a link previewer runs no script, so it does
# not acknowledge), and reloads the alarm list every 30 s while nobody is typing in it.
JS = """\
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var auto = document.querySelector("form[data-auto-submit]");
  if (auto) { auto.submit(); return; }
  if (document.body.dataset.refresh) {
    var busy = false;
    document.addEventListener("input", function () { busy = true; });
    setInterval(function () {
      var a = document.activeElement;
      if (!busy && !(a && (a.tagName === "INPUT" || a.tagName === "SELECT"))) {
        location.reload();
      }
    }, Number(document.body.dataset.refresh) * 1000);
  }
});
"""


def version(text: str) -> str:
    """A short content hash: the asset URLs change when the asset does, so they can be cached."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]


CSS_PATH = f"/static/console.{version(CSS)}.css"
JS_PATH = f"/static/console.{version(JS)}.js"
