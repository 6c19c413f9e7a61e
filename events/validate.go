package events

import (
	"encoding/json"
	"unicode/utf8"
)

// envelope field bits, used to track which fields were seen or already
// reported while decoding.
type fieldSet uint8

const (
	fID fieldSet = 1 << iota
	fTarget
	fContactID
	fOccurredAt
	fPatch
	fStructure
)

// Field names of the envelope, as in JSON.
const (
	nameID         = "id"
	nameTarget     = "target"
	nameContactID  = "contact_id"
	nameOccurredAt = "occurred_at"
	namePatch      = "patch"
	nameStructure  = "structure"
)

// Values of Event.Structure.
const (
	structureFlat   = "FLAT"
	structureNested = "NESTED"
)

// Validate checks e and canonicalises ContactID in place; it returns the
// problems found (nil if valid), each with Index 0. A ContactID is only
// rewritten when it is valid.
func (e *Event) Validate() []FieldError {
	c := collector{}
	e.validate(&c, 0, false, patchMembers{})
	return c.errs
}

// validate records e's problems in c, skipping the fields in skip (already
// reported while decoding). trusted says Patch is already known to be valid
// JSON in valid UTF-8 without unpaired surrogate escapes. noted, if it has
// members noted, gives the members of Patch.
func (e *Event) validate(c *collector, skip fieldSet, trusted bool, noted patchMembers) {
	if skip&fID == 0 {
		if p := idProblem(e.ID); p != "" {
			c.add(nameID, p)
		}
	}
	targetOK := e.Target.known()
	if skip&fTarget == 0 && !targetOK {
		if e.Target == "" {
			c.add(nameTarget, "is required")
		} else {
			c.add(nameTarget, `must be "revyops" or "skipcall"`)
		}
	}
	if skip&fContactID == 0 {
		e.validateContactID(c)
	}
	if skip&fOccurredAt == 0 && e.OccurredAt.IsZero() {
		c.add(nameOccurredAt, "is required")
	}
	if skip&fStructure == 0 && e.Structure != "" {
		switch {
		case e.Target == TargetSkipcall:
			c.add(nameStructure, "only valid for target revyops")
		case e.Structure != structureFlat && e.Structure != structureNested:
			c.add(nameStructure, `must be "FLAT" or "NESTED"`)
		}
	}
	if skip&fPatch == 0 {
		validatePatchIn(c, e.Target, e.Patch, trusted, noted)
	}
}

// validateContactID checks and canonicalises e.ContactID for e.Target.
func (e *Event) validateContactID(c *collector) {
	var id, problem string
	switch e.Target {
	case TargetRevyOps:
		id, problem = canonicalRevyOpsID(e.ContactID)
	case TargetSkipcall:
		id, problem = canonicalSkipcallID(e.ContactID)
	default:
		if e.ContactID == "" {
			problem = "is required"
		}
		id = e.ContactID
	}
	if problem != "" {
		c.add(nameContactID, problem)
		return
	}
	e.ContactID = id
}

// validatePatch checks patch against the request schema of target.
func validatePatch(c *collector, target Target, patch json.RawMessage, trusted bool) {
	validatePatchIn(c, target, patch, trusted, patchMembers{})
}

// validatePatchIn is validatePatch, taking the members of patch from it if
// it has them noted (it.b set) instead of finding them again.
func validatePatchIn(c *collector, target Target, patch json.RawMessage, trusted bool, it patchMembers) {
	if len(patch) == 0 {
		c.add(namePatch, "is required")
		return
	}
	if !trusted {
		switch {
		case !utf8.Valid(patch):
			c.add(namePatch, "must be valid UTF-8")
			return
		case !json.Valid(patch):
			c.add(namePatch, "must be valid JSON")
			return
		case unpairedSurrogate(patch) >= 0:
			c.add(namePatch, "must not hold unpaired UTF-16 surrogate escapes")
			return
		}
	}
	p := trimSpace(patch)
	if k := kindOf(p); k != kindObject {
		c.add(namePatch, "must be an object, not "+k.String())
		return
	}
	if isEmptyContainer(p) {
		c.add(namePatch, "must have at least one field")
		return
	}
	if it.b == nil {
		it.scan = newMembers(p)
	}
	switch target {
	case TargetRevyOps:
		validateRevyOpsPatch(c, &it)
	case TargetSkipcall:
		validateSkipcallPatch(c, &it)
	}
}
