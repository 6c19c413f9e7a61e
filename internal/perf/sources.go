package perf

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/sources"
)

// The HubSpot source of the bench: the README's, with its client secret.
const (
	hubspotSecret  = "bench-hubspot-client-secret"
	hubspotBaseURL = "https://hooks.example.com"
	// benchContacts HubSpot objectIds are mapped in the contact map; the
	// load cycles through them, so every event is looked up.
	benchContacts = 1000
)

const hubspotSourceYAML = `
sources:
  hubspot:
    auth:
      scheme: hubspot-v3
      public_url: ` + hubspotBaseURL + `
      secrets: [{env: HUBSPOT_CLIENT_SECRET}]
    id: {json: eventId}
    contacts: lookup
    map:
      filter: >-
        item.subscriptionType == "contact.propertyChange" &&
        item.propertyName in ["email", "firstname", "lastname", "company", "city", "country", "jobtitle", "phone"]
      target: skipcall
      contact_id: item.objectId
      occurred_at: item.occurredAt
      patch: >-
        item.propertyName == "phone"
          ? {"phoneNumbers": [item.propertyValue]}
          : {{"email": "email", "firstname": "firstName", "lastname": "lastName", "company": "company",
              "city": "city", "country": "country", "jobtitle": "role"}[item.propertyName]: item.propertyValue}
`

// hubspotItem appends HubSpot's array of one contact.propertyChange, item
// i of run, to buf.
func hubspotItem(buf []byte, run int64, i int) []byte {
	buf = append(buf, `[{"eventId":`...)
	buf = strconv.AppendInt(buf, run+int64(i), 10)
	buf = append(buf, `,"subscriptionId":2345,"portalId":62515,"appId":54321,"occurredAt":1795600800000,"subscriptionType":"contact.propertyChange","attemptNumber":0,"objectId":`...)
	buf = strconv.AppendInt(buf, int64(i%benchContacts)+1, 10)
	return append(buf, `,"changeSource":"CRM","propertyName":"firstname","propertyValue":"Ada"}]`...)
}

// sourcePhase loads POST /v1/sources/hubspot with single-item HubSpot
// batches, each signed with the v3 scheme and looked up in the contact
// map, exactly as ingestPhase loads POST /v1/events.
func sourcePhase(ctx context.Context, cfg Config) (loadResult, error) {
	env, err := startNATS(ctx, cfg.Dir)
	if err != nil {
		return loadResult{}, err
	}
	defer env.close()
	set, err := sources.Parse([]byte(hubspotSourceYAML), sources.Env{
		LookupEnv: func(string) (string, bool) { return hubspotSecret, true },
		ReadFile:  func(string) ([]byte, error) { return nil, fmt.Errorf("no files") },
	})
	if err != nil {
		return loadResult{}, err
	}
	cm, err := sources.OpenContactMap(ctx, env.js, sources.DefaultContactsBucket, 1)
	if err != nil {
		return loadResult{}, err
	}
	var csv strings.Builder
	for i := 1; i <= benchContacts; i++ {
		fmt.Fprintf(&csv, "hubspot,%s,%d,%s\n", events.TargetSkipcall, i, contactID(i))
	}
	if _, err := cm.ImportCSV(ctx, strings.NewReader(csv.String())); err != nil {
		return loadResult{}, err
	}
	ih, err := ingest.New(ingestConfig(), env.js, env.scfg.EventsStream, env.scfg.SubjectPrefix, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return loadResult{}, err
	}
	defer func() { _ = ih.Close() }()
	if err := ih.MountSources(set, cm, nil); err != nil {
		return loadResult{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return loadResult{}, err
	}
	srv := &http.Server{Handler: ih, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	const path = "/v1/sources/hubspot"
	url := "http://" + ln.Addr().String() + path

	run := time.Now().UnixNano() / 1000 * 1000
	var seq atomic.Int64
	return closedLoop(ctx, cfg, "perf: hubspot source", 1, func() func(context.Context) *http.Request {
		var buf []byte
		mac := hmac.New(sha256.New, []byte(hubspotSecret))
		return func(ctx context.Context) *http.Request {
			buf = hubspotItem(buf[:0], run, int(seq.Add(1)))
			ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
			mac.Reset()
			mac.Write([]byte("POST" + hubspotBaseURL + path))
			mac.Write(buf)
			mac.Write([]byte(ts))
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(buf))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(sources.HeaderHubSpotSignature, base64.StdEncoding.EncodeToString(mac.Sum(nil)))
			req.Header.Set(sources.HeaderHubSpotTimestamp, ts)
			return req
		}
	})
}

// addSourceRows measures the HubSpot source against ing, the native
// endpoint's single-event run of the same bench.
func addSourceRows(ctx context.Context, cfg Config, ing loadResult, rows *[]Row) error {
	hs, err := sourcePhase(ctx, cfg)
	if err != nil {
		return err
	}
	const phase = "ingest HubSpot source (1 item, v3 signature, contact lookup)"
	*rows = append(*rows,
		Row{phase, "events/s (floor: ingest single)", hs.rate, ing.rate, "events/s"},
		Row{phase, "p99 (floor: ingest single)", ms(hs.p(0.99)), ms(ing.p(0.99)), "ms"},
		Row{phase, "allocs/request (floor: ingest single)", hs.allocs, ing.allocs, "allocs"},
	)
	return nil
}
