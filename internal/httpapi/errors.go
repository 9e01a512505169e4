package httpapi

import (
	"net/http"
	"strconv"
	"unicode/utf8"
)

// errorBody is the JSON of every error answer:
// {"error":{"code":400,"status":"INVALID_ARGUMENT","message":"..."}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    int    `json:"code"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

// statusName is the "status" of an error answer, after google.rpc.Code
// where one fits.
func statusName(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusMethodNotAllowed:
		return "METHOD_NOT_ALLOWED"
	case http.StatusConflict:
		return "FAILED_PRECONDITION"
	case http.StatusUnprocessableEntity:
		return "UNPROCESSABLE_ENTITY"
	case http.StatusRequestEntityTooLarge:
		return "PAYLOAD_TOO_LARGE"
	case http.StatusUnsupportedMediaType:
		return "UNSUPPORTED_MEDIA_TYPE"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusInsufficientStorage:
		return "RESOURCE_EXHAUSTED"
	case http.StatusInternalServerError:
		return "INTERNAL"
	}
	return "UNKNOWN"
}

// fieldError is a problem with one field of a request body. Its message is
// "field: value: reason", or "field: reason" without a value.
type fieldError struct {
	Field  string
	Value  string // already quoted or rendered; may be empty
	Reason string
}

func (e *fieldError) Error() string {
	s := e.Field
	if s == "" {
		s = "body"
	}
	if e.Value != "" {
		s += ": " + e.Value
	}
	return s + ": " + e.Reason
}

// maxValueRunes bounds how much of a client's value an error message quotes.
const maxValueRunes = 40

// quoteValue renders a client's string for an error message: quoted, cut
// after maxValueRunes runes.
func quoteValue(s string) string {
	if utf8.RuneCountInString(s) <= maxValueRunes {
		return strconv.Quote(s)
	}
	n := 0
	for i := range s {
		if n == maxValueRunes {
			return strconv.Quote(s[:i]) + "..."
		}
		n++
	}
	return strconv.Quote(s)
}

// shorten cuts a value the pipeline rendered after 2*maxValueRunes runes.
func shorten(s string) string {
	n := 0
	for i := range s {
		if n == 2*maxValueRunes {
			return s[:i] + "..."
		}
		n++
	}
	return s
}
