// Package ratelimit provides Budget: one provider API key's request budget,
// shared by every worker replica through NATS JetStream, with the pauses the
// provider imposes (429, a used-up window, refused credentials) seen by all
// replicas.
//
// # What is shared, and where
//
// A budget is named in NATS by a hash of its target name and API key
// (budgetID), never by the key. It keeps:
//
//   - a counter per window in the counter stream (DefaultCounterStream,
//     AllowMsgCounter, nats-server 2.12+), subject
//     <DefaultCounterSubject>.<budget>.<window start ms>. A slot is one
//     publish with the header "Nats-Incr: +1"; the PubAck carries the new
//     total, and a total above the window's limit means no slot;
//   - the window record (<budget>.window in DefaultBucket): start, close, end
//     and limit, written by compare-and-set;
//   - the pause record (<budget>.pause): kind (rate_limit, credentials),
//     reason, end, consecutive credential failures, written by
//     compare-and-set.
//
// Every replica watches both records (KV watch), so a pause or a window
// change reaches all replicas within milliseconds (TestPauseSeenByAllReplicas
// logs the figure) and most refusals cost no round trip.
//
// # Why counters for the slots, and KV compare-and-set for the rest
//
// A slot is taken on every request by every goroutine of every replica, so
// it must not conflict. The counter is one request-reply that the stream
// leader serialises: no conflicts, no retries, whatever the concurrency. A
// KV entry per window updated by compare-and-set costs a Get and an Update
// per slot, and under contention most Updates lose and retry. Measured on
// one embedded server, medians of five paired runs on a shared 2-core
// machine (go test -run '^$' -bench . -benchtime 3000x, 5 times), ratios to
// a plain JetStream publish (file storage) measured in the same run:
//
//	                 serial (1 goroutine)   3 connections x 32 goroutines
//	take (counter)   1.5x (119 µs)          1.4x, 0 retries
//	kv-cas           3.0x (369 µs)          76x (9.8 ms per slot), 28 lost CAS per slot
//
// The window and pause records change a few times per window, not per
// request; they need compare-and-set (one replica starts a window, one
// replica wins the credential probe) and a watch, which the KV bucket gives.
//
// # Windows
//
// A window is started on demand, by compare-and-set, when a slot is wanted
// and none runs: the provider's window, which starts at our first request
// in it (Skipcall's sandbox does exactly that), then lies inside ours.
// Slots are granted from Start until Close = Start+Window-ResetMargin, so a
// request granted in a window reaches the provider before the provider's
// window ends. Observe moves the window's End to the provider's
// X-RateLimit-Reset plus ResetMargin (only ever later), and the next window
// starts at End: a little after the provider's reset second, never exactly
// on it, as the reset is rounded to whole seconds and clocks differ. Before
// the first response the configured plan's Limit applies; after it, the
// provider's X-RateLimit-Limit, and an X-RateLimit-Remaining lower than our
// count adds the difference (another client of the same key).
//
// # A slot taken before a pause is not used after it
//
// A Grant carries the revision of the pause record it was granted under
// (the pause epoch). Grant.Valid, called immediately before sending, fails
// with ErrPaused if a pause began since; it reads the watched local copy,
// so it costs no round trip. Transport does that check inside
// http.RoundTripper.RoundTrip, the last moment before the request is
// written, for requests whose context carries the Grant (WithGrant).
// TryTake also checks the pause after its counter increment, so a pause
// that began while the increment was in flight wins.
//
// # Credentials
//
// CredentialsFailed pauses the target for all replicas. When the backoff
// (cenkalti/backoff/v4, exponential from ProbeInitial to ProbeMax, jittered)
// has passed, the replicas' TryTake race to claim the probe by
// compare-and-set on the pause record; one wins and gets a Grant with
// Probe() true, the others wait for the next step. CredentialsOK from the
// probe's outcome clears the pause for all; CredentialsFailed backs off
// further. Failures of requests granted before the pause began are not
// counted again. State reports it all for /readyz, and the gauges
// patchbay_ratelimit_paused, patchbay_ratelimit_credential_failures and
// patchbay_ratelimit_pause_remaining_seconds for Prometheus.
//
// # Failure modes
//
// If NATS cannot be reached, TryTake returns the error and nothing may be
// sent: the budget fails closed. If the counter stream loses a window's
// counter (a restore from an old backup), that window may be over-granted
// once; the provider's 429 then pauses everyone until its reset. Clock
// skew between replicas smaller than ResetMargin is absorbed by it.
package ratelimit
