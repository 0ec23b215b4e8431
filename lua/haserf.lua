-- haserf.lua: the HAProxy-side companion of the haserf agent (HAProxy 2.6 and later).
--
-- Load it in haproxy.cfg's global section:
--     setenv HASERF_STATUS_SOCKET /run/haserf/haserf.sock   # optional, this is the default
--     lua-load /etc/haproxy/haserf.lua
--
-- It registers:
--   * the HTTP service  lua.haserf-status  (http-request use-service lua.haserf-status ...)
--       the cluster view: ready or not, alerts, every backend's used slots (free ones
--       counted) with HAProxy's own live status, sessions and served count per slot, and
--       the members with status and tags. JSON for `Accept: application/json` or
--       `?format=json`, a small self-contained HTML page otherwise (reloads itself every
--       HASERF_PAGE_REFRESH_S). Any failure (agent unreachable, timeout, bad or oversized reply, a bug
--       here) answers 503 with the reason, never a 500.
--   * the sample fetch  lua.haserf_node   (the node behind the server that answered)
--       answered from a table kept fresh by a background task: no socket call per request.
--       For X-Served-By the `served-by` map kept by the agent is faster and needs no Lua
--       (docs/companion.md); this fetch stays for configurations that already use it.
--
-- Environment (read once at load time):
--   HASERF_STATUS_SOCKET  the agent's status socket (default /run/haserf/haserf.sock)
--   HASERF_REFRESH_MS     how often the background task refreshes its table (default 1000)
--   HASERF_TIMEOUT_MS     socket timeout for one exchange with the agent (default 1000)
--   HASERF_PAGE_BYTES     largest list page asked of the agent (default 8000): lists come
--                         in pages, so that no reply grows with the cluster
--   HASERF_PAGE_REFRESH_S how often the HTML status page reloads itself (default 2; 0: never)
--
-- Status socket protocol (JSON lines, docs/agent.md): `{"cmd":"members"}`,
-- `{"cmd":"slots","used":true}`, `{"cmd":"status"}`, each with `"offset"`/`"max_bytes"`
-- for one page (`"next"` in the reply names the following page); errors are
-- `{"error":"..."}`. Every request adds `"framed":true,"chunk":4096`: the agent then
-- prefixes each reply with a line `#<byte length>` and sends it in pieces of 4096 bytes,
-- each after an empty line from the script, far below tune.bufsize.

local SOCKET = os.getenv("HASERF_STATUS_SOCKET")
if SOCKET == nil or SOCKET == "" then SOCKET = "/run/haserf/haserf.sock" end
local REFRESH_MS = tonumber(os.getenv("HASERF_REFRESH_MS") or "") or 1000
if REFRESH_MS < 50 then REFRESH_MS = 50 end
local TIMEOUT_MS = tonumber(os.getenv("HASERF_TIMEOUT_MS") or "") or 1000
if TIMEOUT_MS < 1 then TIMEOUT_MS = 1 end
local PAGE_BYTES = math.tointeger(tonumber(os.getenv("HASERF_PAGE_BYTES") or "") or 8000) or 8000
if PAGE_BYTES < 1024 then PAGE_BYTES = 1024 end
local PAGE_REFRESH_S = math.tointeger(tonumber(os.getenv("HASERF_PAGE_REFRESH_S") or "") or 2) or 2
if PAGE_REFRESH_S < 0 then PAGE_REFRESH_S = 0 end
-- Bounds on one listing: the agent must make progress and stop.
local MAX_PAGES = 10000
local MAX_ENTRIES = 1000000
-- Largest reply read (a page asks for PAGE_BYTES; the status summary may exceed it), and
-- the piece size the agent sends it in: well below any tune.bufsize.
local MAX_REPLY_BYTES = 16 * 1024 * 1024
local READ_CHUNK = 4096

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

-- Failures are logged when their reason changes (not once per request, and not only the
-- first one), and recovery is logged once.
local last_failure = {}

local function note_failure(what, reason)
  if last_failure[what] ~= reason then
    last_failure[what] = reason
    core.Warning("haserf: " .. what .. ": " .. reason)
  end
end

local function note_ok(what)
  if last_failure[what] ~= nil then
    last_failure[what] = nil
    core.Info("haserf: " .. what .. ": the agent at " .. SOCKET .. " answers again")
  end
end

-- One connection to the agent for a series of requests. Every reply is read completely
-- before the next request is sent. Every request asks for a framed reply in pieces
-- (`"framed":true,"chunk":READ_CHUNK`): the agent answers a header line `#<N>`, then the
-- N-byte JSON reply and a newline READ_CHUNK bytes at a time, each piece but the first
-- after an empty line from us. So no more than READ_CHUNK bytes are ever pending, far
-- below one tune.bufsize buffer: a Lua socket cannot read a line longer than its buffer
-- (2.6 waits for the timeout, 3.0/3.2 hang, 3.4 cuts it), and 2.6/3.0 stop reading a
-- socket once its buffer was full. An unframed reply (an older agent) is refused at its
-- first byte instead of being read as a line.
-- Only usable where core.tcp() is allowed (tasks, services, actions). Never raises.
local Session = {}
Session.__index = Session

local function now_ms()
  local t = core.now()
  return t.sec * 1000 + t.usec // 1000
end

local function open_session()
  local s = core.tcp()
  local ok, res, cerr = pcall(function()
    s:settimeout(TIMEOUT_MS / 1000)
    return s:connect(CONNECT_ADDR)
  end)
  if not ok or not res then
    pcall(s.close, s)
    return nil, "cannot connect to the haserf agent at " .. SOCKET .. ": " ..
      tostring(ok and cerr or res)
  end
  return setmetatable({ sock = s }, Session)
end

function Session:close()
  pcall(self.sock.close, self.sock)
end

-- Reads one socket pattern (a byte count, or "*l" for the short frame header); returns the
-- data, or nil and the socket's reason.
function Session:read(pattern)
  local ok, data, err = pcall(self.sock.receive, self.sock, pattern)
  if not ok then return nil, tostring(data) end
  if data == nil then return nil, tostring(err) end
  return data
end

-- Reads one framed reply (`#<N>\n`, N bytes, `\n`) and returns its JSON text, or nil and a
-- reason. Bounded by TIMEOUT_MS per read, by TIMEOUT_MS per piece for the whole reply (a
-- busy machine may take a while per round trip; a trickling agent may not), and by
-- MAX_REPLY_BYTES.
function Session:read_frame(what)
  local started = now_ms()
  local first, err = self:read(1)
  if not first then
    return nil, "no reply from the haserf agent at " .. SOCKET .. " to " .. what .. " within " ..
      TIMEOUT_MS .. " ms: " .. err
  end
  if first ~= "#" then
    return nil, "the haserf agent at " .. SOCKET .. " answered " .. what .. " without a length " ..
      "frame: it is older than this script (upgrade the agent; the script and the agent ship " ..
      "together). Such a reply is one line, and a line longer than tune.bufsize cannot be read"
  end
  local header
  header, err = self:read("*l")
  if not header then
    return nil, "no frame header from the haserf agent at " .. SOCKET .. " to " .. what ..
      " within " .. TIMEOUT_MS .. " ms: " .. err
  end
  local n = string.match(header, "^(%d+)\r?$")
  n = n and #n <= 12 and math.tointeger(tonumber(n)) or nil
  if not n then
    return nil, "bad frame header from the haserf agent to " .. what .. ": #" ..
      string.sub(header, 1, 40)
  end
  if n > MAX_REPLY_BYTES then
    return nil, "reply to " .. what .. " is " .. n .. " bytes, more than the " ..
      MAX_REPLY_BYTES .. " this script reads"
  end
  -- the body and its newline, READ_CHUNK bytes at a time; an empty line asks for the next
  local parts, got, want = {}, 0, n + 1
  local deadline = started + TIMEOUT_MS * (2 + want // READ_CHUNK)
  while got < want do
    if got > 0 then
      if now_ms() > deadline then
        return nil, "reply from the haserf agent to " .. what .. " not complete within " ..
          (deadline - started) .. " ms (" .. got .. " of " .. n .. " bytes)"
      end
      local oks, sent, serr = pcall(self.sock.send, self.sock, "\n")
      if not oks or not sent then
        return nil, "cannot send to the haserf agent at " .. SOCKET .. ": " ..
          tostring(oks and serr or sent)
      end
    end
    local piece
    piece, err = self:read(math.min(READ_CHUNK, want - got))
    if not piece then
      return nil, "reply from the haserf agent to " .. what .. " cut short after " .. got ..
        " of " .. n .. " bytes: " .. err
    end
    parts[#parts + 1] = piece
    got = got + #piece
  end
  local body = table.concat(parts)
  if string.sub(body, -1) ~= "\n" then
    return nil, "reply from the haserf agent to " .. what .. " is longer than its frame (" ..
      n .. " bytes)"
  end
  return string.sub(body, 1, -2)
end

-- Sends one request (a JSON object's text; the framing fields are added to it) and returns the
-- decoded reply object, or nil and a reason.
function Session:request(line, what)
  line = string.gsub(line, "}$", ',"framed":true,"chunk":' .. READ_CHUNK .. '}')
  local ok, sent, serr = pcall(self.sock.send, self.sock, line .. "\n")
  if not ok or not sent then
    return nil, "cannot send to the haserf agent at " .. SOCKET .. ": " .. tostring(ok and serr or sent)
  end
  local reply, err = self:read_frame(what)
  if not reply then return nil, err end
  local okd, obj = pcall(json.decode, reply)
  if not okd then
    return nil, "unreadable reply from the haserf agent to " .. what .. " (" .. #reply ..
      " bytes): " .. tostring(obj)
  end
  if getmetatable(obj) ~= OBJECT_MT then
    return nil, "reply to " .. what .. " is not a JSON object"
  end
  if obj.error ~= nil then
    return nil, "the haserf agent answered " .. what .. " with an error: " .. tostring(obj.error)
  end
  return obj
end

-- Every entry of list `key` from command `cmd` (extra request fields in `extra`, a JSON
-- fragment starting with a comma, or ""), page by page. Returns the entries and the last
-- reply (for fields next to the list, such as "free"), or nil and a reason.
function Session:list(cmd, key, extra)
  local items, offset, last = {}, 0, nil
  for _ = 1, MAX_PAGES do
    local line = '{"cmd":"' .. cmd .. '"' .. extra .. ',"offset":' .. offset ..
      ',"max_bytes":' .. PAGE_BYTES .. '}'
    local reply, err = self:request(line, cmd)
    if not reply then return nil, err end
    local page = reply[key]
    if type(page) ~= "table" then return nil, "reply to " .. cmd .. " has no " .. key .. " list" end
    for _, e in ipairs(page) do items[#items + 1] = e end
    if #items > MAX_ENTRIES then return nil, "reply to " .. cmd .. " lists more than " .. MAX_ENTRIES .. " entries" end
    last = reply
    local nxt = reply.next
    if nxt == nil or nxt == json.null then return items, last end
    if math.type(nxt) ~= "integer" or nxt <= offset then
      return nil, "reply to " .. cmd .. " names no later page (next=" .. tostring(nxt) .. ")"
    end
    offset = nxt
  end
  return nil, "reply to " .. cmd .. " did not end within " .. MAX_PAGES .. " pages"
end

-- HAProxy writes IPv6 addresses without brackets ("::1:80"); compare on that form.
local function norm_addr(a)
  if type(a) ~= "string" then return nil end
  return (string.gsub(a, "[%[%]]", ""))
end

---------------------------------------------------------------------------------------------
-- Background task: slot -> node table for lua.haserf_node
---------------------------------------------------------------------------------------------

-- node_map[backend][slot] = { member = "node-name", addr = "ip:port" }
local node_map = {}

local function refresh_map()
  local sess, err = open_session()
  if not sess then return nil, err end
  local slots
  slots, err = sess:list("slots", "slots", ',"used":true')
  sess:close()
  if not slots then return nil, err end
  local m = {}
  for _, s in ipairs(slots) do
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
  while true do
    local ok, res, err = pcall(refresh_map)
    if ok and res then
      note_ok("slot table refresh")
    else
      -- keep the last table: the address check in the fetch keeps it honest
      note_failure("slot table refresh", tostring(ok and err or res))
    end
    core.msleep(REFRESH_MS)
  end
end)

-- The node behind the server that handled this request, or "" when unknown (a Lua nil
-- would turn into the boolean false, printed "0"). A slot reused since the last refresh is
-- detected by its address and yields "" rather than a wrong name.
local function haserf_node(txn)
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
end

core.register_fetches("haserf_node", function(txn)
  local ok, res = pcall(haserf_node, txn)
  if ok then return res end
  note_failure("lua.haserf_node", tostring(res))
  return ""
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

-- HAProxy's own view of one server: status, address, current sessions. `proxies` caches
-- core.backends lookups for one page (each lookup builds the proxy's server table).
local function live_server(proxies, be, slot)
  local px = proxies[be]
  if px == nil then
    px = core.backends[be] or false
    proxies[be] = px
  end
  local sv = px and px.servers[slot]
  if not sv then return nil end
  local st = sv:get_stats() or {}
  return {
    status = st["status"], addr = sv:get_addr(), sessions = st["scur"], served = st["stot"],
    weight = st["weight"], check = st["check_status"],
  }
end

-- members: the member list; slots: the used slots; free: backend -> number of free slots;
-- status: the agent's status object (or a table with `error`).
local function build_view(members_list, slots, free, status)
  local status_of = {}
  local members = array()
  for _, m in ipairs(members_list) do
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
  local function backend(be)
    local b = by_name[be]
    if not b then
      b = object({ name = be, slots = array(), used = 0, free = 0 })
      by_name[be] = b
      backends[#backends + 1] = b
    end
    return b
  end
  if type(free) == "table" then
    for be, n in pairs(free) do backend(tostring(be)).free = math.tointeger(n) or 0 end
  end
  local proxies = {}
  for _, s in ipairs(slots) do
    local be = tostring(val(s.backend))
    local b = backend(be)
    local member = val(s.member)
    if member then
      b.used = b.used + 1
      local live = live_server(proxies, be, tostring(val(s.slot)))
      b.slots[#b.slots + 1] = object({
        slot = val(s.slot),
        member = member,
        member_status = status_of[member] or "unknown",
        addr = val(s.addr),
        state = val(s.state),
        agent_haproxy_status = val(s.haproxy_status),
        live_status = live and live.status or NULL,
        live_addr = live and live.addr or NULL,
        live_sessions = live and live.sessions or NULL,
        live_served = live and live.served or NULL,
        live_check = live and live.check or NULL,
      })
    elseif type(free) ~= "table" then
      -- an agent that lists free slots (older than `"used":true`): count them instead
      b.free = b.free + 1
    end
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
  return object({
    agent_socket = SOCKET,
    generated_at = core.now().sec,
    members = members,
    backends = backends,
    status = status,
  })
end

local CSS = [[
body{font:14px/1.45 system-ui,sans-serif;margin:1.2em 1.5em;color:#1f2328;background:#f6f8fa}
h1{font-size:1.45em;margin:0 0 .25em}h2{font-size:1.1em;margin:1.3em 0 .4em}
table{border-collapse:collapse;background:#fff;min-width:46em}
th,td{border:1px solid #d0d7de;padding:.3em .65em;text-align:left;vertical-align:top}
th{background:#eaeef2;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#6e7781}code{font-size:.95em}.summary{margin:.2em 0 1em}
.ok{color:#1a7f37;font-weight:600}.warn{color:#9a6700;font-weight:600}.bad{color:#cf222e;font-weight:600}
.badge{display:inline-block;padding:.1em .55em;border-radius:1em;font-size:.75em;vertical-align:middle;color:#fff}
.badge.ok{background:#1a7f37}.badge.bad{background:#cf222e}
td.s-ready{background:#dafbe1;color:#116329;font-weight:600}
td.s-drain{background:#fff8c5;color:#7d4e00;font-weight:600}
td.s-maint{background:#ffebe9;color:#a40e26;font-weight:600}
tr.gone td{color:#8c959f}
.alert{border-left:4px solid #cf222e;background:#ffebe9;padding:.4em .8em;margin:.3em 0}
.alert.resolved{border-color:#8c959f;background:#f6f8fa;color:#57606a}
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

-- 2h 5m, 5m 3s, 42s (as `haserf status`).
local function human_duration(secs)
  secs = math.tointeger(math.floor(tonumber(secs) or 0)) or 0
  if secs < 0 then secs = 0 end
  local d, h, m, s = secs // 86400, secs // 3600 % 24, secs // 60 % 60, secs % 60
  if d > 0 then return d .. "d " .. h .. "h" end
  if h > 0 then return h .. "h " .. m .. "m" end
  if m > 0 then return m .. "m " .. s .. "s" end
  return s .. "s"
end

-- The summary line under the title, from the agent's status (or why it is missing).
local function summary(view)
  local st = view.status
  local parts = { "updated " .. os.date("!%H:%M:%S", view.generated_at) .. " UTC" }
  if PAGE_REFRESH_S > 0 then parts[#parts + 1] = "refreshes every " .. PAGE_REFRESH_S .. " s" end
  local alive, total = 0, 0
  for _, m in ipairs(view.members) do
    total = total + 1
    if m.status == "alive" then alive = alive + 1 end
  end
  parts[#parts + 1] = alive .. " of " .. total .. " members alive"
  local h = type(st) == "table" and val(st.haproxy)
  if type(h) == "table" then
    if val(h.pid) then
      parts[#parts + 1] = "HAProxy pid " .. html_escape(h.pid) ..
        (val(h.uptime_sec) and (", up " .. human_duration(h.uptime_sec)) or "")
    end
    if type(val(h.last_apply)) == "number" then
      parts[#parts + 1] = "last change applied " .. human_duration(view.generated_at - h.last_apply) .. " ago"
    end
  end
  parts[#parts + 1] = "agent socket <code>" .. html_escape(SOCKET) .. "</code>"
  parts[#parts + 1] = '<a href="?format=json">JSON</a>'
  return table.concat(parts, " &middot; ")
end

local function render_alerts(w, st)
  local h = type(st) == "table" and val(st.haproxy)
  local alerts = type(h) == "table" and val(h.alerts)
  if type(alerts) ~= "table" or #alerts == 0 then return end
  w("<h2>Alerts</h2>")
  for _, a in ipairs(alerts) do
    local active = val(a.active) ~= false
    local text = html_escape(val(a.kind) or "alert") .. " &middot; backend " .. html_escape(val(a.backend)) ..
      ": " .. html_escape(val(a.message)) .. ' <span class="muted">since ' .. html_escape(val(a.at)) .. "</span>"
    if not active then
      text = text .. ' <span class="muted">&mdash; resolved ' .. html_escape(val(a.resolved_at)) .. ": " ..
        html_escape(val(a.resolution)) .. "</span>"
    end
    w('<div class="alert' .. (active and "" or " resolved") .. '">' .. text .. "</div>")
  end
end

local function render_html(view)
  local o = {}
  local function w(s) o[#o + 1] = s end
  local st = view.status
  w('<!DOCTYPE html><html><head><meta charset="utf-8"><title>haserf cluster</title>')
  if PAGE_REFRESH_S > 0 then w('<meta http-equiv="refresh" content="' .. PAGE_REFRESH_S .. '">') end
  w("<style>" .. CSS .. "</style></head><body>")
  local node, badge = "", ""
  if type(st) == "table" and val(st.error) == nil then
    node = val(st.node) and (" &middot; " .. html_escape(st.node)) or ""
    if st.ready == true then
      badge = ' <span class="badge ok">READY</span>'
    else
      badge = ' <span class="badge bad">NOT READY</span>'
    end
  elseif type(st) == "table" then
    badge = ' <span class="badge bad">status unavailable: ' .. html_escape(st.error) .. "</span>"
  end
  w("<h1>haserf" .. node .. badge .. "</h1>")
  w('<p class="summary muted">' .. summary(view) .. "</p>")
  render_alerts(w, st)
  local h = type(st) == "table" and val(st.haproxy)
  local status_backends = type(h) == "table" and val(h.backends) or {}
  for _, b in ipairs(view.backends) do
    local sb = type(status_backends) == "table" and status_backends[b.name]
    local queued = type(sb) == "table" and val(sb.queued)
    local extra = ""
    if type(queued) == "table" and #queued > 0 then
      local names = {}
      for _, q in ipairs(queued) do names[#names + 1] = html_escape(q) end
      extra = ", " .. #queued .. " waiting for a slot: " .. table.concat(names, ", ")
    end
    w("<h2>Backend " .. html_escape(b.name) .. ' <span class="muted">(' .. b.used .. " used, " ..
      b.free .. " free, not listed" .. extra .. ")</span></h2>")
    w("<table><tr><th>slot</th><th>member</th><th>state</th><th>HAProxy</th><th>address</th>" ..
      "<th>sessions</th><th>served</th><th>member status</th></tr>")
    for _, s in ipairs(b.slots) do
      local state = val(s.state)
      local state_cls = state and ("s-" .. tostring(state)) or nil
      w("<tr>" .. cell(s.slot) .. cell(s.member) .. cell(state, state_cls) ..
        cell(s.live_status, status_class(s.live_status)) .. cell(s.addr) ..
        cell(s.live_sessions, "num") .. cell(s.live_served, "num") ..
        cell(s.member_status, status_class(s.member_status)) .. "</tr>")
    end
    if #b.slots == 0 then
      w('<tr><td colspan="8" class="muted">no member in this backend</td></tr>')
    end
    w("</table>")
  end
  -- members: the live ones first, departed ones (left, failed) after and greyed
  local order = { alive = 1, leaving = 2, failed = 3, left = 4 }
  local members = {}
  for _, m in ipairs(view.members) do members[#members + 1] = m end
  table.sort(members, function(a, b)
    local oa, ob = order[a.status] or 5, order[b.status] or 5
    if oa ~= ob then return oa < ob end
    return tostring(a.name) < tostring(b.name)
  end)
  w("<h2>Members</h2><table><tr><th>name</th><th>address</th><th>status</th><th>tags</th></tr>")
  for _, m in ipairs(members) do
    local tags = {}
    local keys = {}
    for k in pairs(m.tags) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do tags[#tags + 1] = html_escape(k) .. "=" .. html_escape(m.tags[k]) end
    local gone = (m.status == "left" or m.status == "failed") and ' class="gone"' or ""
    local status = m.status
    if m.suspect == true and status == "alive" then status = "alive (suspect)" end
    w("<tr" .. gone .. ">" .. cell(m.name) .. cell(tostring(m.addr) .. ":" .. tostring(m.port)) ..
      cell(status, status_class(m.status)) .. "<td><code>" .. table.concat(tags, " ") .. "</code></td></tr>")
  end
  w("</table>")
  w("</body></html>\n")
  return table.concat(o)
end

-- Reads everything the page shows, on one connection. Returns the view, or nil and a reason.
local function read_view()
  local sess, err = open_session()
  if not sess then return nil, err end
  local members, slots, last
  members, last = sess:list("members", "members", "")
  if not members then
    err = last
  else
    slots, last = sess:list("slots", "slots", ',"used":true')
    if not slots then err = last end
  end
  local status
  if not err then
    -- the summary is optional on the page: a failure shows in it instead of failing the page
    local st, serr = sess:request('{"cmd":"status","max_bytes":' .. PAGE_BYTES .. '}', "status")
    status = st or object({ error = serr })
  end
  sess:close()
  if err then return nil, err end
  return build_view(members, slots, last and last.free, status)
end

local function unavailable(applet, as_json, reason)
  if as_json then
    respond(applet, 503, "application/json", json.encode(object({
      error = "haserf agent unavailable", detail = reason, agent_socket = SOCKET,
    })) .. "\n")
  else
    respond(applet, 503, "text/html; charset=utf-8",
      '<!DOCTYPE html><html><head><meta charset="utf-8"><title>haserf: agent unavailable</title>' ..
      "<style>" .. CSS .. "</style></head><body><h1>haserf agent unavailable</h1><p>" ..
      html_escape(reason) .. '</p><p class="muted">HAProxy keeps serving traffic; this page ' ..
      "recovers by itself when the agent is back.</p></body></html>\n")
  end
end

-- Every failure becomes the documented 503 with its reason (a runtime error in here
-- included): HAProxy's own 500 and a per-request ALERT are never what a user sees.
core.register_service("haserf-status", "http", function(applet)
  local as_json = false
  local started = false
  local ok, err = pcall(function()
    as_json = wants_json(applet)
    local view, reason = read_view()
    if not view then
      note_failure("status page", reason)
      started = true
      return unavailable(applet, as_json, reason)
    end
    note_ok("status page")
    local body, ctype
    if as_json then
      body, ctype = json.encode(view) .. "\n", "application/json"
    else
      body, ctype = render_html(view), "text/html; charset=utf-8"
    end
    started = true
    respond(applet, 200, ctype, body)
  end)
  if not ok then
    local reason = "internal error in haserf.lua: " .. tostring(err)
    note_failure("status page", reason)
    if not started then pcall(unavailable, applet, as_json, reason) end
  end
end)

-- Exposed for unit tests run outside HAProxy (lua5.3 with a stub `core`).
return { json = json }
