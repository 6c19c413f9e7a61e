package events

// Exported for the events_test package only: the paths that Decode and
// Marshal take, so tests can hold the fast ones to the full ones.
var (
	DecodeFull        = decodeFull
	DecodeStored      = decodeStored
	DecodeRequestFull = decodeRequestFull
	DecodeRequestFast = decodeRequestFast
	TrimSpace         = trimSpace
	CheckJSONFast     = checkJSONFast
	UnpairedSurrogate = unpairedSurrogate
)
