package dialect

import "time"

// The bounds the dialects share: what no sender means to send.

// eventTimes are the times an event may carry, in Unix milliseconds: from
// 2000-01-01 to a day after now (a sender's clock may run ahead, never by
// a day). s2s, commerce and track refuse any other time with
// eventTimeRange.
type eventTimes struct{ earliest, latest int64 }

// eventTimeRange is the violation of a time outside eventTimes.
const eventTimeRange = "must be between 2000-01-01 and a day from now"

func eventTimesAt(now time.Time) eventTimes {
	return eventTimes{earliest: 946684800000, latest: now.Add(24 * time.Hour).UnixMilli()} // 2000-01-01T00:00:00Z
}

// contain reports whether ms, Unix milliseconds, is within the bounds.
func (b eventTimes) contain(ms int64) bool { return ms >= b.earliest && ms <= b.latest }
