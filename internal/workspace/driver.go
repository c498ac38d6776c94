package workspace

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Driver is one GPU workspace as the dispatcher sees it (CONTRACT section 14).
// Two implementations exist: *Client (Workspace API v1, driver "gooni") and
// the ComfyUI driver (driver "comfyui"). Every method is safe for concurrent
// use. Errors a caller can act on: ErrNotFound (the workspace does not know
// the task), *BusyError (backpressure: try later, not a failed try),
// *RefusedError (the workspace will not run this task as sent),
// ErrTargetInvalid, ErrRedirect, ErrBadResponse and *StatusError; a timeout
// is a context.DeadlineExceeded or a net.Error whose Timeout() is true.
type Driver interface {
	// Health checks that the workspace answers and says what it can serve.
	Health(ctx context.Context) (*Health, error)
	// Submit hands a task over. Re-sending the same TaskID creates no twin: a
	// workspace that already has it answers as for the first send.
	Submit(ctx context.Context, req *TaskRequest) (*TaskState, error)
	// Status reports one task; ErrNotFound when the workspace does not know it.
	Status(ctx context.Context, id string) (*TaskState, error)
	// Result opens the finished media; the caller closes Body.
	Result(ctx context.Context, id string) (*Media, error)
	// Preview opens the still image of a task (ErrNotFound when there is none).
	Preview(ctx context.Context, id string) (*Media, error)
	// Cancel stops a queued or running task, or forgets a finished one;
	// ErrNotFound when the workspace has no such task.
	Cancel(ctx context.Context, id string) error
	// Close releases what the driver holds (connections, goroutines).
	Close() error
}

// Media is a result or preview body with the type the workspace declared.
type Media struct {
	Body        io.ReadCloser
	ContentType string // as declared by the workspace, unchecked
	Length      int64  // -1 when unknown
}

// BusyError is a workspace saying it is busy (HTTP 429 or 503): the task
// stays pending without using a try, and the account gets no new task for
// RetryAfter (CONTRACT section 14).
type BusyError struct {
	Status     int
	RetryAfter time.Duration // from Retry-After; DefaultRetryAfter when absent or unreadable
}

// DefaultRetryAfter is how long a busy workspace is left alone when it names no time.
const DefaultRetryAfter = 5 * time.Second

// RetryAfter reads a Retry-After header (RFC 9110 section 10.2.3: delay
// seconds or an HTTP date) as a wait from now, at most one hour;
// DefaultRetryAfter when it is absent or unreadable.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultRetryAfter
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return DefaultRetryAfter
		}
		d = time.Duration(min(n, 3600)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return DefaultRetryAfter
	}
	return min(max(d, 0), time.Hour)
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("workspace busy (status %d), retry after %s", e.Status, e.RetryAfter)
}

// RefusedError is a workspace refusing the task as sent (for example a
// ComfyUI 400 with node_errors). Message is safe to show: it names the node,
// input and problem, never a credential.
type RefusedError struct {
	Message string
}

func (e *RefusedError) Error() string { return "workspace refused the task: " + e.Message }
