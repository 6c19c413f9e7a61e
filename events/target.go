package events

// Target names the provider an event is applied at.
type Target string

// The known targets.
const (
	// TargetRevyOps applies the patch with RevyOps' PATCH /public/v2/contacts/{contact_id}.
	TargetRevyOps Target = "revyops"
	// TargetSkipcall applies the patch with Skipcall's PATCH /v1/contacts/{id}.
	TargetSkipcall Target = "skipcall"
)

// Targets lists the known targets. It returns a new slice on every call.
func Targets() []Target {
	return []Target{TargetRevyOps, TargetSkipcall}
}

// known reports whether t is one of Targets.
func (t Target) known() bool {
	return t == TargetRevyOps || t == TargetSkipcall
}
