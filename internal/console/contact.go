package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/history"
	"github.com/patchbay/patchbay/processor/lww"
)

// Contacts reads what patchbay knows of one contact: per field the value
// last applied and the event that set it, and its recent deliveries
// (history.Viewer).
type Contacts interface {
	Contact(ctx context.Context, target events.Target, contact string) (history.Contact, error)
}

// contact shows the contact page: a form for target and id and, once
// given, the contact's fields and history. It only reads (GET).
func (c *Console) contact(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	target, id := strings.TrimSpace(q.Get("target")), strings.TrimSpace(q.Get("id"))
	data := map[string]any{"Target": target, "ID": id, "Targets": events.Targets()}
	if c.cfg.Contacts == nil {
		data["Error"] = "contact history is not available on this listener"
		c.render(w, r, http.StatusOK, "contact", data)
		return
	}
	if target == "" || id == "" {
		c.render(w, r, http.StatusOK, "contact", data)
		return
	}
	ct, err := c.cfg.Contacts.Contact(r.Context(), events.Target(target), id)
	switch {
	case errors.Is(err, lww.ErrInvalid):
		data["Error"] = "no such contact: the target must be revyops or skipcall, and the id a provider contact id"
		c.render(w, r, http.StatusUnprocessableEntity, "contact", data)
		return
	case err != nil:
		c.fail(w, r, http.StatusBadGateway, "reading the contact: "+err.Error())
		return
	}
	// Newest delivery first, as the CLI prints them.
	hs := make([]history.Record, len(ct.History))
	for i, h := range ct.History {
		hs[len(hs)-1-i] = h
	}
	data["C"], data["History"] = ct, hs
	c.render(w, r, http.StatusOK, "contact", data)
}

// contactURL is the contact page of (target, id) under base.
func contactURL(base, target, id string) string {
	return base + "contacts?" + url.Values{"target": {target}, "id": {id}}.Encode()
}
