package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzUserCredentials feeds arbitrary header, query and cookie values through
// the user auth path, including X-API-Key sent twice: the answer is always 200
// or one structured 401, never a panic or a 5xx; only the real key sent once,
// or a real cookie, gets through, and the real key sent once always does. In
// header, header2 and query, "$KEY" stands for the server's real API key.
func FuzzUserCredentials(f *testing.F) {
	f.Add("", "", "", "", false, false, false, false)
	f.Add("wrong", "", "", "", true, false, false, false)
	f.Add("", "", "wrong", "", false, false, true, false)
	f.Add("", "", "", "MTIzNDU2Nzg5MHwxMjM0NTY3ODkw|abc", false, false, false, true)
	f.Add("\x00\xff", "", "%zz", "a|b|c|d", true, false, true, true)
	f.Add("", "", "", "\"quoted\"", false, false, false, true)
	f.Add("$KEY", "", "", "", true, false, false, false)
	f.Add("", "", "$KEY", "", false, false, true, false)
	// Two X-API-Key headers: never decided by the first value alone.
	f.Add("$KEY", "wrong", "", "", true, true, false, false)
	f.Add("wrong", "$KEY", "", "", true, true, false, false)
	f.Add("$KEY", "$KEY", "", "", true, true, false, false)
	f.Add("$KEY", "", "$KEY", "", true, true, true, false)
	e := newEnv(f)
	key := func(v string) string { return strings.ReplaceAll(v, "$KEY", e.sec.APIKey) }
	f.Fuzz(func(t *testing.T, header, header2, query, cookie string, useHeader, repeatHeader, useQuery, useCookie bool) {
		header, header2, query = key(header), key(header2), key(query)
		r := httptest.NewRequest("GET", "/gallery", nil)
		if useHeader {
			r.Header["X-Api-Key"] = []string{header}
			if repeatHeader {
				r.Header["X-Api-Key"] = append(r.Header["X-Api-Key"], header2)
			}
		}
		if useQuery {
			r.URL.RawQuery = "api_key=" + url.QueryEscape(query)
		}
		if useCookie {
			r.Header.Set("Cookie", "gg_session="+cookie)
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		// The first credential present decides (CONTRACT.md section 3); a
		// header sent twice is one ambiguous credential, refused whatever
		// its values.
		rightKey := useHeader && !repeatHeader && header == e.sec.APIKey ||
			!useHeader && useQuery && query == e.sec.APIKey
		switch w.Code {
		case http.StatusOK:
			if !useHeader && !useQuery {
				t.Fatalf("a forged cookie %q got through", cookie)
			}
			if useHeader && repeatHeader {
				t.Fatalf("X-API-Key sent twice got through")
			}
			if !rightKey {
				t.Fatalf("a wrong key got through")
			}
		case http.StatusBadRequest, http.StatusUnauthorized:
			code := errCode(t, w)
			if rightKey {
				t.Fatalf("the right key was refused: %d %s", w.Code, code)
			}
			if useHeader && code != "invalid_api_key" {
				t.Fatalf("a request with X-API-Key got %s, want invalid_api_key", code)
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body.String())
		}
	})
}

// FuzzDecodeToken: the cookie decoder rejects anything it did not encode.
func FuzzDecodeToken(f *testing.F) {
	e := newEnv(f)
	good, _ := e.srv.cookies.Encode(userCookie, []byte("0123456789abcdef0123456789abcdef"))
	f.Add(good)
	f.Add("")
	f.Add("MTY5|Zm9v|YmFy")
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, v string) {
		tok, ok := decodeToken(e.srv.cookies, userCookie, v)
		if ok && v != good {
			t.Fatalf("decoded a cookie it did not issue: %q -> %q", v, tok)
		}
	})
}

// FuzzRange sends arbitrary Range (and If-Range) headers at a done task's
// result: the answer is the whole file, the asked part, or the structured
// 416, never a 5xx or a panic, and a 206 body is really part of the file.
func FuzzRange(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=0-", "bytes=-5", "bytes=5-2", "bytes=0-1,3-4", "bytes=99999999999999999999-",
		"bytes=-0", "bytes=", "items=0-1", "bytes=0-1, 0-1, 0-1", "bytes=\x00", "bytes=1-2,-1"} {
		f.Add(s, "")
	}
	f.Add("bytes=0-3", `"stale"`)
	e := newEnv(f)
	acc := e.readyAccount()
	task := e.task("done", acc.ID)
	f.Fuzz(func(t *testing.T, rng, ifRange string) {
		r := httptest.NewRequest("GET", "/results/"+task.ID, nil)
		r.Header.Set("X-API-Key", e.sec.APIKey)
		r.Header["Range"] = []string{rng}
		if ifRange != "" {
			r.Header["If-Range"] = []string{ifRange}
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			if !bytes.Equal(w.Body.Bytes(), pngBytes) {
				t.Fatal("200 body is not the file")
			}
		case http.StatusPartialContent:
			if !strings.HasPrefix(w.Header().Get("Content-Type"), "multipart/") && !bytes.Contains(pngBytes, w.Body.Bytes()) {
				t.Fatalf("206 body is not a part of the file: %q", w.Body.Bytes())
			}
		case http.StatusRequestedRangeNotSatisfiable:
			errCode(t, w)
		default:
			t.Fatalf("Range %q: status %d %s", rng, w.Code, w.Body.String())
		}
	})
}
