-- haserf.lua: the HAProxy-side companion of the haserf agent (HAProxy 2.6 and later).
--
-- Load it in haproxy.cfg's global section:
--     setenv HASERF_STATUS_SOCKET /run/haserf/haserf.sock   # optional, this is the default
--     lua-load /etc/haproxy/haserf.lua
--
-- It registers:
--   * the HTTP service  lua.haserf-status  (http-request use-service lua.haserf-status ...)
--       the cluster view: members with status and tags, and every backend's slot table
--       with HAProxy's own live status per slot. JSON for `Accept: application/json` or
--       `?format=json`, a small self-contained HTML page otherwise. 503 with a clear body
--       when the agent cannot be reached.
--   * the sample fetch  lua.haserf_node   (http-response set-header X-Served-By %[lua.haserf_node])
--       the cluster node behind the server that handled the request. Answered from a map
--       kept fresh by a background task: no socket call per request.
--
-- Environment (read once at load time):
--   HASERF_STATUS_SOCKET  the agent's status socket (default /run/haserf/haserf.sock)
--   HASERF_REFRESH_MS     how often the background task refreshes the map (default 1000)
--   HASERF_TIMEOUT_MS     socket timeout for one exchange with the agent (default 1000)
--
-- Status socket protocol (JSON lines): `{"cmd":"members"}` -> `{"members":[...]}`,
-- `{"cmd":"slots"}` -> `{"slots":[...]}`, `{"cmd":"status"}` -> a summary object,
-- errors are `{"error":"..."}`.

local SOCKET = os.getenv("HASERF_STATUS_SOCKET")
if SOCKET == nil or SOCKET == "" then SOCKET = "/run/haserf/haserf.sock" end
local REFRESH_MS = tonumber(os.getenv("HASERF_REFRESH_MS") or "") or 1000
if REFRESH_MS < 50 then REFRESH_MS = 50 end
local TIMEOUT_MS = tonumber(os.getenv("HASERF_TIMEOUT_MS") or "") or 1000
if TIMEOUT_MS < 1 then TIMEOUT_MS = 1 end

-- core.tcp() wants "unix@/path" (a bare absolute path also works in 2.6).
local CONNECT_ADDR = SOCKET
if string.sub(SOCKET, 1, 1) == "/" then CONNECT_ADDR = "unix@" .. SOCKET end

---------------------------------------------------------------------------------------------
-- Minimal JSON (decode + encode). Objects decode with OBJECT_MT, arrays with ARRAY_MT, so
-- that re-encoding keeps `{}` and `[]` apart; JSON null is the sentinel NULL.
---------------------------------------------------------------------------------------------

local json = {}
local NULL = setmetatable({}, { __tostring = function() return "null" end })
local OBJECT_MT = { __name = "json-object" }
local ARRAY_MT = { __name = "json-array" }
json.null = NULL

local function decode_error(str, pos, msg)
  error(string.format("invalid JSON at byte %d: %s", pos, msg), 0)
end

local function skip_ws(str, pos)
  return string.find(str, "[^ \t\r\n]", pos) or (#str + 1)
end

local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local decode_value

local function decode_string(str, pos)
  -- pos is at the opening quote
  local out = {}
  local i = pos + 1
  while true do
    local c = string.sub(str, i, i)
    if c == "" then decode_error(str, i, "unterminated string") end
    if c == '"' then return table.concat(out), i + 1 end
    if c == "\\" then
      local e = string.sub(str, i + 1, i + 1)
      if e == "u" then
        local hex = string.sub(str, i + 2, i + 5)
        if not string.match(hex, "^%x%x%x%x$") then decode_error(str, i, "bad \\u escape") end
        local cp = tonumber(hex, 16)
        i = i + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = string.match(str, "^\\u(%x%x%x%x)", i)
          if lo then
            local lcp = tonumber(lo, 16)
            if lcp >= 0xDC00 and lcp <= 0xDFFF then
              cp = 0x10000 + (cp - 0xD800) * 0x400 + (lcp - 0xDC00)
              i = i + 6
            end
          end
        end
        if cp >= 0xD800 and cp <= 0xDFFF then cp = 0xFFFD end
        out[#out + 1] = utf8.char(cp)
      else
        local r = escapes[e]
        if not r then decode_error(str, i, "bad escape") end
        out[#out + 1] = r
        i = i + 2
      end
    else
      local j = string.find(str, '["\\]', i)
      if not j then decode_error(str, i, "unterminated string") end
      out[#out + 1] = string.sub(str, i, j - 1)
      i = j
    end
  end
end

local function decode_array(str, pos)
  local arr = setmetatable({}, ARRAY_MT)
  pos = skip_ws(str, pos + 1)
  if string.sub(str, pos, pos) == "]" then return arr, pos + 1 end
  while true do
    local v
    v, pos = decode_value(str, pos)
    arr[#arr + 1] = v
    pos = skip_ws(str, pos)
    local c = string.sub(str, pos, pos)
    if c == "]" then return arr, pos + 1 end
    if c ~= "," then decode_error(str, pos, "expected ',' or ']'") end
    pos = skip_ws(str, pos + 1)
  end
end

local function decode_object(str, pos)
  local obj = setmetatable({}, OBJECT_MT)
  pos = skip_ws(str, pos + 1)
  if string.sub(str, pos, pos) == "}" then return obj, pos + 1 end
  while true do
    if string.sub(str, pos, pos) ~= '"' then decode_error(str, pos, "expected a key") end
    local k
    k, pos = decode_string(str, pos)
    pos = skip_ws(str, pos)
    if string.sub(str, pos, pos) ~= ":" then decode_error(str, pos, "expected ':'") end
    pos = skip_ws(str, pos + 1)
    local v
    v, pos = decode_value(str, pos)
    obj[k] = v
    pos = skip_ws(str, pos)
    local c = string.sub(str, pos, pos)
    if c == "}" then return obj, pos + 1 end
    if c ~= "," then decode_error(str, pos, "expected ',' or '}'") end
    pos = skip_ws(str, pos + 1)
  end
end

decode_value = function(str, pos)
  pos = skip_ws(str, pos)
  local c = string.sub(str, pos, pos)
  if c == "{" then return decode_object(str, pos) end
  if c == "[" then return decode_array(str, pos) end
  if c == '"' then return decode_string(str, pos) end
  if string.sub(str, pos, pos + 3) == "null" then return NULL, pos + 4 end
  if string.sub(str, pos, pos + 3) == "true" then return true, pos + 4 end
  if string.sub(str, pos, pos + 4) == "false" then return false, pos + 5 end
  local num = string.match(str, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if num and num ~= "" and num ~= "-" then
    local n = math.tointeger(tonumber(num)) or tonumber(num)
    if n == nil then decode_error(str, pos, "bad number") end
    return n, pos + #num
  end
  decode_error(str, pos, "unexpected character '" .. c .. "'")
end

function json.decode(str)
  local v, pos = decode_value(str, 1)
  pos = skip_ws(str, pos)
  if pos <= #str then decode_error(str, pos, "trailing characters") end
  return v
end

local function encode_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    if c == "\n" then return "\\n" end
    if c == "\r" then return "\\r" end
    if c == "\t" then return "\\t" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

local function is_array(t)
  local mt = getmetatable(t)
  if mt == ARRAY_MT then return true end
  if mt == OBJECT_MT then return false end
  return t[1] ~= nil
end

function json.encode(v)
  local t = type(v)
  if v == nil or v == NULL then return "null" end
  if t == "boolean" then return v and "true" or "false" end
  if t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return string.format("%.14g", v)
  end
  if t == "string" then return encode_string(v) end
  if t == "table" then
    local parts = {}
    if is_array(v) then
      for i = 1, #v do parts[i] = json.encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do
      parts[#parts + 1] = encode_string(k) .. ":" .. json.encode(v[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return encode_string(tostring(v))
end

local function array(t) return setmetatable(t or {}, ARRAY_MT) end
local function object(t) return setmetatable(t or {}, OBJECT_MT) end

-- The value, or nil for JSON null / absent.
local function val(v)
  if v == NULL then return nil end
  return v
end

---------------------------------------------------------------------------------------------
-- Talking to the agent
---------------------------------------------------------------------------------------------

-- Sends one command and returns the decoded reply, or nil and an error text. Never raises.
-- Only callable where core.tcp() is allowed (tasks, services, actions); the socket yields,
-- so HAProxy is never blocked.
--
-- One connection per command, on purpose: HAProxy 2.6's Lua sockets cannot read a reply
-- that does not fit in one buffer (tune.bufsize, 16 KB by default) and stall when the
-- agent's pending output exceeds it, so pipelining several replies on one connection would
-- hit that limit sooner.
local function query(cmd)
  local s = core.tcp()
  s:settimeout(TIMEOUT_MS / 1000)
  local ok, cerr = s:connect(CONNECT_ADDR)
  if not ok then
    s:close()
    return nil, "cannot connect to the haserf agent at " .. SOCKET .. ": " .. tostring(cerr)
  end
  local sent, serr = s:send('{"cmd":"' .. cmd .. '"}\n')
  if not sent then
    s:close()
    return nil, "cannot send to the haserf agent at " .. SOCKET .. ": " .. tostring(serr)
  end
  local line, rerr = s:receive("*l")
  s:close()
  if not line then
    return nil, "no reply from the haserf agent at " .. SOCKET .. " to " .. cmd .. ": " ..
      tostring(rerr) .. " (a hung agent, or a reply larger than tune.bufsize)"
  end
  local okd, obj = pcall(json.decode, line)
  if not okd then
    return nil, "unreadable reply from the haserf agent to " .. cmd .. ": " .. tostring(obj)
  end
  return obj
end

local function reply_error(obj, key)
  if type(obj) ~= "table" then return "reply is not an object" end
  if obj.error ~= nil then return "agent error: " .. tostring(val(obj.error)) end
  if key and type(obj[key]) ~= "table" then return "reply has no " .. key .. " list" end
  return nil
end

-- HAProxy writes IPv6 addresses without brackets ("::1:80"); compare on that form.
local function norm_addr(a)
  if type(a) ~= "string" then return nil end
  return (string.gsub(a, "[%[%]]", ""))
end

---------------------------------------------------------------------------------------------
-- Background task: slot -> node map for lua.haserf_node
---------------------------------------------------------------------------------------------

-- node_map[backend][slot] = { member = "node-name", addr = "ip:port" }
local node_map = {}
local map_state = { refreshed = 0, last_error = nil, failures = 0 }

local function refresh_map()
  local reply, err = query("slots")
  if not reply then return nil, err end
  local perr = reply_error(reply, "slots")
  if perr then return nil, perr end
  local m = {}
  for _, s in ipairs(reply.slots) do
    local be, slot, member = val(s.backend), val(s.slot), val(s.member)
    if type(be) == "string" and type(slot) == "string" and type(member) == "string" then
      m[be] = m[be] or {}
      m[be][slot] = { member = member, addr = norm_addr(val(s.addr)) }
    end
  end
  node_map = m
  return true
end

core.register_task(function()
  local warned = false
  while true do
    local ok, res, err = pcall(refresh_map)
    if ok and res then
      map_state.refreshed = core.now().sec
      map_state.last_error = nil
      if warned then core.Info("haserf: agent reachable again at " .. SOCKET) end
      warned = false
    else
      -- keep the last map: the address check in the fetch keeps it honest
      map_state.last_error = ok and err or tostring(res)
      map_state.failures = map_state.failures + 1
      if not warned then
        core.Warning("haserf: cannot refresh the slot map: " .. tostring(map_state.last_error))
        warned = true
      end
    end
    core.msleep(REFRESH_MS)
  end
end)

-- The node behind the server that handled this request, or "" when unknown (a Lua nil
-- would turn into the boolean false, printed "0"). A slot reused since the last refresh is
-- detected by its address and yields "" rather than a wrong name.
core.register_fetches("haserf_node", function(txn)
  local be = txn.f:be_name()
  local srv = txn.f:srv_name()
  if not be or not srv then return "" end
  local bmap = node_map[be]
  if not bmap then return "" end
  local e = bmap[srv]
  if not e then return "" end
  if e.addr then
    local px = core.backends[be]
    local sv = px and px.servers[srv]
    if sv and norm_addr(sv:get_addr()) ~= e.addr then return "" end
  end
  return e.member
end)

---------------------------------------------------------------------------------------------
-- The status service
---------------------------------------------------------------------------------------------

local function html_escape(s)
  s = tostring(s == nil and "" or s)
  return (string.gsub(s, "[&<>\"']", {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;",
  }))
end

local function wants_json(applet)
  local qs = applet.qs or ""
  for k, v in string.gmatch(qs, "([^&=]+)=([^&]*)") do
    if k == "format" then return v == "json" end
  end
  local h = applet.headers and applet.headers["accept"]
  if h then
    for _, v in pairs(h) do
      if string.find(string.lower(v), "application/json", 1, true) then return true end
    end
  end
  return false
end

local function respond(applet, code, ctype, body)
  applet:set_status(code)
  applet:add_header("content-type", ctype)
  applet:add_header("content-length", tostring(#body))
  applet:add_header("cache-control", "no-store")
  if code == 503 then applet:add_header("retry-after", "1") end
  applet:start_response()
  applet:send(body)
end

-- HAProxy's own view of one server: status, address, current sessions.
local function live_server(be, slot)
  local px = core.backends[be]
  local sv = px and px.servers[slot]
  if not sv then return nil end
  local st = sv:get_stats() or {}
  return { status = st["status"], addr = sv:get_addr(), sessions = st["scur"], weight = st["weight"] }
end

local function build_view(members_reply, slots_reply, status_reply)
  local status_of = {}
  local members = array()
  for _, m in ipairs(members_reply.members) do
    local tags = object()
    if type(m.tags) == "table" then
      for k, v in pairs(m.tags) do tags[k] = val(v) end
    end
    members[#members + 1] = object({
      name = val(m.name), addr = val(m.addr), port = val(m.port),
      status = val(m.status), tags = tags, suspect = val(m.suspect),
    })
    if type(m.name) == "string" then status_of[m.name] = val(m.status) end
  end
  table.sort(members, function(a, b) return tostring(a.name) < tostring(b.name) end)

  local backends, by_name = array(), {}
  for _, s in ipairs(slots_reply.slots) do
    local be = tostring(val(s.backend))
    local b = by_name[be]
    if not b then
      b = object({ name = be, slots = array(), used = 0, free = 0 })
      by_name[be] = b
      backends[#backends + 1] = b
    end
    local member = val(s.member)
    if member then b.used = b.used + 1 else b.free = b.free + 1 end
    local live = live_server(be, tostring(val(s.slot)))
    b.slots[#b.slots + 1] = object({
      slot = val(s.slot),
      member = member,
      member_status = member and (status_of[member] or "unknown") or nil,
      addr = val(s.addr),
      state = val(s.state),
      agent_haproxy_status = val(s.haproxy_status),
      live_status = live and live.status or NULL,
      live_addr = live and live.addr or NULL,
      live_sessions = live and live.sessions or NULL,
    })
  end
  table.sort(backends, function(a, b) return a.name < b.name end)
  local function slot_num(s) return tonumber(string.match(tostring(s.slot), "(%d+)$")) or 0 end
  for _, b in ipairs(backends) do
    table.sort(b.slots, function(x, y)
      local nx, ny = slot_num(x), slot_num(y)
      if nx ~= ny then return nx < ny end
      return tostring(x.slot) < tostring(y.slot)
    end)
  end
  local status = NULL
  if type(status_reply) == "table" and status_reply.error == nil then status = status_reply end
  return object({
    agent_socket = SOCKET,
    generated_at = core.now().sec,
    members = members,
    backends = backends,
    status = status,
  })
end

local CSS = [[
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;min-width:40em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eee}.muted{color:#888}code{font-size:.95em}
.ok{color:#1a7f37;font-weight:600}.warn{color:#9a6700;font-weight:600}.bad{color:#cf222e;font-weight:600}
]]

local function status_class(s)
  s = string.upper(tostring(s or ""))
  if s == "ALIVE" or string.sub(s, 1, 2) == "UP" or s == "READY" then return "ok" end
  if s == "LEAVING" or s == "DRAIN" or string.sub(s, 1, 5) == "NOLB" then return "warn" end
  if s == "" or s == "NULL" then return "muted" end
  return "bad"
end

local function cell(v, cls)
  if v == nil or v == NULL then return '<td class="muted">-</td>' end
  if cls then return '<td class="' .. cls .. '">' .. html_escape(v) .. "</td>" end
  return "<td>" .. html_escape(v) .. "</td>"
end

local function render_html(view)
  local o = {}
  local function w(s) o[#o + 1] = s end
  w('<!DOCTYPE html><html><head><meta charset="utf-8"><title>haserf cluster</title>')
  w("<style>" .. CSS .. "</style></head><body>")
  w("<h1>haserf cluster</h1>")
  w('<p class="muted">agent socket <code>' .. html_escape(SOCKET) .. "</code> &middot; " ..
    #view.members .. " members &middot; " .. #view.backends ..
    ' backends &middot; <a href="?format=json">JSON</a></p>')
  w("<h2>Members</h2><table><tr><th>name</th><th>address</th><th>status</th><th>tags</th></tr>")
  for _, m in ipairs(view.members) do
    local tags = {}
    local keys = {}
    for k in pairs(m.tags) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do tags[#tags + 1] = html_escape(k) .. "=" .. html_escape(m.tags[k]) end
    w("<tr>" .. cell(m.name) .. cell(tostring(m.addr) .. ":" .. tostring(m.port)) ..
      cell(m.status, status_class(m.status)) .. "<td><code>" .. table.concat(tags, " ") .. "</code></td></tr>")
  end
  w("</table>")
  for _, b in ipairs(view.backends) do
    w("<h2>Backend " .. html_escape(b.name) .. ' <span class="muted">(' .. b.used .. " used, " ..
      b.free .. " free)</span></h2>")
    w("<table><tr><th>slot</th><th>member</th><th>member status</th><th>address</th>" ..
      "<th>state</th><th>HAProxy live status</th><th>sessions</th></tr>")
    for _, s in ipairs(b.slots) do
      w("<tr>" .. cell(s.slot) .. cell(s.member) .. cell(s.member_status, status_class(s.member_status)) ..
        cell(s.addr) .. cell(s.state, status_class(s.state)) ..
        cell(s.live_status, status_class(s.live_status)) .. cell(s.live_sessions) .. "</tr>")
    end
    w("</table>")
  end
  w("</body></html>\n")
  return table.concat(o)
end

core.register_service("haserf-status", "http", function(applet)
  local as_json = wants_json(applet)
  local members, slots, status, err
  members, err = query("members")
  if members then
    err = reply_error(members, "members")
    if not err then
      slots, err = query("slots")
      if slots then err = reply_error(slots, "slots") end
    end
  end
  if not err then status = query("status") end
  if err then
    if as_json then
      respond(applet, 503, "application/json", json.encode(object({
        error = "haserf agent unavailable", detail = err, agent_socket = SOCKET,
      })) .. "\n")
    else
      respond(applet, 503, "text/html; charset=utf-8",
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>haserf: agent unavailable</title>' ..
        "<style>" .. CSS .. "</style></head><body><h1>haserf agent unavailable</h1><p>" ..
        html_escape(err) .. '</p><p class="muted">HAProxy keeps serving traffic; this page ' ..
        "recovers by itself when the agent is back.</p></body></html>\n")
    end
    return
  end
  local view = build_view(members, slots, status)
  if as_json then
    respond(applet, 200, "application/json", json.encode(view) .. "\n")
  else
    respond(applet, 200, "text/html; charset=utf-8", render_html(view))
  end
end)

-- Exposed for unit tests run outside HAProxy (lua5.3 with a stub `core`).
return { json = json }
