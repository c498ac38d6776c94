// Package taskid holds the one definition of what a task id may look like on
// the wire (CONTRACT section 2: any id not matching ^[A-Za-z0-9_-]{1,64}$ is
// task_not_found), so that it is one URL path segment everywhere.
package taskid

import "regexp"

// Pattern is the shape of a task id in a URL path or a workspace call.
var Pattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Valid reports whether id matches Pattern.
func Valid(id string) bool { return Pattern.MatchString(id) }
