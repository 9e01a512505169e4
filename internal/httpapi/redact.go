package httpapi

import "github.com/slideshowd/slideshowd/internal/redact"

// redacted replaces a secret in anything the handler writes or logs.
const redacted = redact.Mark

// redactor removes configured secrets, API-key-shaped strings and URL user
// information from what the handler writes or logs (see internal/redact).
type redactor = redact.Redactor

func newRedactor(secrets []string) redactor { return redact.New(secrets...) }
