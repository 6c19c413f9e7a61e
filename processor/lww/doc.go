// Package lww decides, per field, which change to a contact wins: the one
// that occurred last at the source (last-writer-wins by event time), whatever
// order the events arrive in, how often they are redelivered and how many
// workers deliver them.
//
// A change is a provider PATCH body stamped with a Clock: the event's
// occurred_at, ties broken by event id. A patch is split into fields with the
// provider's PATCH semantics (see Fields): a field is replaced whole by a
// PATCH, so the newest clock per field decides the field's final value.
//
// The worker uses the package in three steps per contact:
//
//  1. Merge coalesces queued changes into one PATCH holding, per field, the
//     value with the newest clock, and returns each field's clock.
//  2. Filter drops the fields whose stored clock (Store.Get) is at least as
//     new; an event with nothing left is superseded and is not sent.
//  3. After the provider's 2xx, Store.Commit records the applied clocks,
//     keeping per field the maximum, with revision compare-and-set so
//     concurrent commits never lose a newer clock.
//
// The stored clocks only ever grow (until their entry expires, see
// StoreConfig.TTL), so once a field's newest change is applied, no older
// change to that field is sent again.
package lww
