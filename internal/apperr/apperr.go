// Package apperr is the error vocabulary of the domain: every error a user
// can cause carries a code, a message fit to show, and the field at fault.
// Only the HTTP layer maps codes to statuses; an error without a code is
// "internal", logged once and shown as such.
package apperr

import (
	"errors"
	"fmt"
)

// Code classifies an error for the caller.
type Code string

const (
	Invalid      Code = "invalid"
	NotFound     Code = "not_found"
	Conflict     Code = "conflict"
	Unauthorized Code = "unauthorized"
	Forbidden    Code = "forbidden"
	RateLimited  Code = "rate_limited"
	TooLarge     Code = "too_large"
	Unavailable  Code = "unavailable"
	Internal     Code = "internal"
)

// Error is a domain error.
type Error struct {
	Code    Code
	Message string
	// Field names the input at fault, when there is one.
	Field string
	// Err is an underlying cause, not shown to users.
	Err error
}

func (e *Error) Error() string {
	s := string(e.Code) + ": " + e.Message
	if e.Field != "" {
		s = string(e.Code) + ": " + e.Field + ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error with a code and a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Field returns an Invalid error about one input field.
func Field(field, format string, args ...any) *Error {
	return &Error{Code: Invalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of the first *Error in err's chain, Internal for
// any other error, and "" for nil.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Is reports whether err carries code.
func Is(err error, code Code) bool { return CodeOf(err) == code }
