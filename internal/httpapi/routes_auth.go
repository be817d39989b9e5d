package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
)

// authRoutes are sign-in, sign-out and the signed-in user.
func (a *api) authRoutes() []Route {
	return []Route{
		{Method: "POST", Pattern: "/auth/sign-in", Rule: Public, Summary: "Check phone and password; send a code by SMS", handler: a.signIn},
		{Method: "POST", Pattern: "/auth/verify", Rule: Public, Summary: "Check the code; open a session", handler: a.verify},
		{Method: "POST", Pattern: "/auth/resend", Rule: Public, Summary: "Send a new sign-in code for a challenge", handler: a.resend},
		{Method: "POST", Pattern: "/auth/sign-out", Rule: SignedIn, Summary: "Revoke the session", handler: a.signOut},
		{Method: "GET", Pattern: "/me", Rule: SignedIn, Summary: "The signed-in user", handler: a.me},
	}
}

// --- sign-in ---

type signInRequest struct {
	Phone    string `json:"phone"`
	Password string `json:"password"`
}

type signInResponse struct {
	Challenge string `json:"challenge"`
}

func (a *api) signIn(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if !a.signInIP.allow(clientIP(r)) {
		return apperr.New(apperr.RateLimited, "too many sign-in attempts; wait a minute")
	}
	var req signInRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if !a.signInPhone.allow(phoneKey(req.Phone)) {
		return apperr.New(apperr.RateLimited, "too many sign-in attempts for this number; wait a few minutes")
	}
	ch, err := a.cfg.Auth.SignIn(r.Context(), req.Phone, req.Password)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, signInResponse{Challenge: ch})
	return nil
}

// phoneKey reduces a phone number to its digits, so spacing does not buy
// more attempts.
func phoneKey(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

type verifyRequest struct {
	Challenge string `json:"challenge"`
	Code      string `json:"code"`
}

type verifyResponse struct {
	Token     string    `json:"token"`
	CSRFToken string    `json:"csrf_token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      auth.User `json:"user"`
}

func (a *api) verify(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if !a.verifyIP.allow(clientIP(r)) {
		return apperr.New(apperr.RateLimited, "too many code checks; wait a minute")
	}
	var req verifyRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	g, err := a.cfg.Auth.Verify(r.Context(), req.Challenge, req.Code)
	if err != nil {
		return err
	}
	a.setCookie(w, SessionCookie, g.Token, g.ExpiresAt, true)
	a.setCookie(w, CSRFCookie, g.CSRF, g.ExpiresAt, false)
	writeJSON(w, http.StatusOK, verifyResponse{Token: g.Token, CSRFToken: g.CSRF, ExpiresAt: g.ExpiresAt, User: g.User})
	return nil
}

type resendRequest struct {
	Challenge string `json:"challenge"`
}

type resendResponse struct {
	Challenge string    `json:"challenge"`
	SendsLeft int       `json:"sends_left"`
	NextAt    time.Time `json:"next_resend_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// resend sends a new code for a challenge. The auth service bounds resends
// per challenge (how many, how often); the per-address limit of code checks
// bounds them per client.
func (a *api) resend(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if !a.verifyIP.allow(clientIP(r)) {
		return apperr.New(apperr.RateLimited, "too many code requests; wait a minute")
	}
	var req resendRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	res, err := a.cfg.Auth.Resend(r.Context(), req.Challenge)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, resendResponse{Challenge: res.Challenge, SendsLeft: res.SendsLeft, NextAt: res.NextAt, ExpiresAt: res.ExpiresAt})
	return nil
}

func (a *api) setCookie(w http.ResponseWriter, name, value string, expires time.Time, httpOnly bool) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: httpOnly, Secure: a.cfg.CookieSecure, SameSite: http.SameSiteLaxMode}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	http.SetCookie(w, c)
}

func (a *api) signOut(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if err := a.cfg.Auth.SignOut(r.Context(), *p); err != nil {
		return err
	}
	a.setCookie(w, SessionCookie, "", time.Time{}, true)
	a.setCookie(w, CSRFCookie, "", time.Time{}, false)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) me(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	u, err := a.cfg.Auth.User(r.Context(), p.UserID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}
