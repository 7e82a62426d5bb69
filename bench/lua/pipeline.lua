-- HTTP pipelining: every write carries DEPTH requests for the URL's path
-- (DEPTH = first script argument: wrk ... -s pipeline.lua URL -- 16; default 16).
-- wrk sends the next batch once all DEPTH responses of the previous one arrived.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local depth = 16
local batch = nil

init = function(args)
  if args[1] then depth = tonumber(args[1]) end
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format(nil, wrk.path)
  end
  batch = table.concat(r)
end

request = function()
  return batch
end
