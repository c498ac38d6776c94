package workspace

// CheckBaseURL applies the base URL rules of NewClient to another driver's
// target: it returns the URL as scheme://host[:port] without a trailing
// slash, or an error wrapping ErrTargetInvalid when the URL is not https (or
// http to a loopback host), or carries a path, query, fragment or user info.
func CheckBaseURL(raw string) (string, error) { return checkTarget(raw) }
