package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"
)

// cookieName is the console's session cookie.
const cookieName = "patchbay_console"

// csrfField is the form field every mutating form carries.
const csrfField = "csrf"

// sessions issues and checks the console's signed session cookies and
// the CSRF token bound to each session.
//
// A cookie is base64url(id ‖ expiry) "." base64url(HMAC-SHA256(key, id ‖
// expiry)); the CSRF token of a session is HMAC-SHA256(key, "csrf" ‖ id).
// With an admin token, key is derived from it, so every replica accepts
// the cookies of the others and changing the token logs everybody out;
// without one, key is random per process.
type sessions struct {
	token []byte // the admin token; nil when none is configured
	key   []byte
	ttl   time.Duration
	now   func() time.Time
}

func newSessions(token string, ttl time.Duration, now func() time.Time) (*sessions, error) {
	s := &sessions{ttl: ttl, now: now}
	if token != "" {
		s.token = []byte(token)
		k := sha256.Sum256([]byte("patchbay console session key\x00" + token))
		s.key = k[:]
		return s, nil
	}
	s.key = make([]byte, 32)
	if _, err := rand.Read(s.key); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sessions) mac(parts ...[]byte) []byte {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// issue sets a new session cookie on w and returns the session id.
func (s *sessions) issue(w http.ResponseWriter, r *http.Request, path string) []byte {
	payload := make([]byte, 16+8)
	_, _ = rand.Read(payload[:16])
	exp := s.now().Add(s.ttl)
	binary.BigEndian.PutUint64(payload[16:], uint64(exp.Unix()))
	enc := base64.RawURLEncoding
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: enc.EncodeToString(payload) + "." + enc.EncodeToString(s.mac(payload)),
		Path: path, Expires: exp, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	return payload[:16]
}

// clear removes the session cookie.
func (s *sessions) clear(w http.ResponseWriter, path string) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: path, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// session returns the id of r's valid, unexpired session, or nil.
func (s *sessions) session(r *http.Request) []byte {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	p, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return nil
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p)
	mac, err2 := enc.DecodeString(sig)
	if err1 != nil || err2 != nil || len(payload) != 24 || !hmac.Equal(mac, s.mac(payload)) {
		return nil
	}
	if exp := time.Unix(int64(binary.BigEndian.Uint64(payload[16:])), 0); !s.now().Before(exp) {
		return nil
	}
	return payload[:16]
}

// csrf returns the CSRF token of session id.
func (s *sessions) csrf(id []byte) string {
	return base64.RawURLEncoding.EncodeToString(s.mac([]byte("csrf\x00"), id))
}

// checkCSRF reports whether r's form carries the CSRF token of session id.
func (s *sessions) checkCSRF(r *http.Request, id []byte) bool {
	got := r.PostFormValue(csrfField)
	return id != nil && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf(id))) == 1
}

// tokenOK reports whether presented is the admin token, in constant time.
func (s *sessions) tokenOK(presented string) bool {
	if s.token == nil || presented == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(presented)), sha256.Sum256(s.token)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// bearer reports whether r carries the admin token as a bearer token (a
// script, not a browser: a browser never adds it by itself, so such a
// request needs no CSRF token).
func (s *sessions) bearer(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && s.tokenOK(tok)
}

// errHost is why a request without an admin token is refused: its Host is
// not a loopback name, which is what a DNS-rebinding page would send.
var errHost = errors.New("console: without PATCHBAY_ADMIN_TOKEN the console answers only requests addressed to a loopback host")

// loopbackHost reports whether the Host header names a loopback address.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
