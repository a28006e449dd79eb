-- lib/reservation_record.lua: a reservation as remembered for a repeated call:
-- "status|retry_after|id:token,id:token,..." (jobs in the order they were returned; `refs`
-- as reserve lists them). reservation_from_record reads it back.

local function reservation_record(result, refs)
  return result[1] .. '|' .. result[2] .. '|' .. table.concat(refs, ',')
end
