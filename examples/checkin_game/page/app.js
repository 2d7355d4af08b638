// The check-in game's page: who is here now at a venue, and a user's live feed (polling).
// Plain browser JavaScript; everything comes from the JSON API served next to this file.
"use strict";

const params = new URLSearchParams(location.search);
const POLL_MS = Number(params.get("poll")) || 2000;
const names = { users: new Map(), venues: new Map() };
const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

// Names never change: ask once per id, and remember.
async function nameOf(kind, id) {
  const cache = names[kind];
  if (!cache.has(id)) {
    cache.set(id, api(`/${kind}/${id}`).then((found) => found.name, () => `#${id}`));
  }
  return cache.get(id);
}

function clock(iso) {
  const t = new Date(iso);
  const time = document.createElement("time");
  time.dateTime = iso;
  const today = t.toDateString() === new Date().toDateString();
  const day = today ? "" : `${t.toLocaleDateString([], { month: "short", day: "numeric" })} `;
  time.textContent = day + t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return time;
}

function item(attrs, ...children) {
  const li = document.createElement("li");
  for (const [key, value] of Object.entries(attrs)) li.dataset[key] = value;
  li.append(...children);
  return li;
}

function span(text, className) {
  const s = document.createElement("span");
  s.textContent = text;
  if (className) s.className = className;
  return s;
}

async function showHere(venueId) {
  const answer = await api(`/here/${venueId}`);
  $("venue-name").textContent = await nameOf("venues", venueId);
  const rows = await Promise.all(
    answer.here.map(async (p) =>
      item({ userId: p.user_id }, span(await nameOf("users", p.user_id), "who"), clock(p.since)),
    ),
  );
  const count = rows.length === 1 ? "1 person" : `${rows.length} people`;
  $("here-count").textContent = rows.length === 0 ? "nobody" : count;
  $("here").replaceChildren(...rows);
}

async function showFeed(userId) {
  const [feed, badges] = await Promise.all([api(`/feed/${userId}`), api(`/badges/${userId}`)]);
  $("user-name").textContent = await nameOf("users", userId);
  const own = feed.activity.map((a) => ({ id: a.checkin_id, user: a.user_id, venue: a.venue_id, at: a.at, tag: "you" }));
  const friends = feed.inbox.map((i) => ({
    id: i.checkin_id, user: i.from_user, venue: i.venue_id, at: i.at, tag: i.nearby ? "nearby" : "friend",
  }));
  const entries = [...own, ...friends].sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
  const rows = await Promise.all(
    entries.map(async (e) =>
      item(
        { checkinId: e.id, userId: e.user },
        span(await nameOf("users", e.user), "who"),
        span(`checked in at ${await nameOf("venues", e.venue)}`),
        span(e.tag, `tag ${e.tag}`),
        clock(e.at),
      ),
    ),
  );
  $("feed").replaceChildren(...rows);
  const awards = badges.awards.map((a) => a.badge).join(", ");
  $("badges").textContent = `${badges.points} points${awards ? ": " + awards : ""}`;
}

async function refresh() {
  const venueId = $("venue-id").value;
  const userId = $("user-id").value;
  const status = $("status");
  try {
    await Promise.all([venueId ? showHere(venueId) : null, userId ? showFeed(userId) : null]);
    status.className = "muted";
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    status.className = "error";
    status.textContent = error.message;
  }
}

async function checkIn() {
  const body = JSON.stringify({ user_id: Number($("user-id").value), venue_id: Number($("venue-id").value) });
  try {
    await api("/checkins", { method: "POST", headers: { "Content-Type": "application/json" }, body });
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = error.message;
    return;
  }
  await refresh();
}

$("venue-id").value = params.get("venue") || "";
$("user-id").value = params.get("user") || "";
$("check-in").addEventListener("click", checkIn);
refresh();
setInterval(refresh, POLL_MS);
