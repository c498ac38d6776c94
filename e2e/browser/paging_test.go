package browser

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gooni/internal/testutil"
	"gooni/store"
)

// seedDone writes n done image tasks straight into the running server's
// database (with real preview files), oldest first: faster than generating
// a page's worth through the 3-second demo workspace.
func seedDone(t *testing.T, srv *server, n int) []string {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(srv.DataDir, testutil.Schema(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	demo, err := db.GetAccountByName(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	png := testutil.ReadRepoFile(t, "docs/screenshots/admin.png")
	var ids []string
	for i := 0; i < n; i++ {
		task := &store.Task{ID: store.NewID(), Type: "image", Model: "flux", Mode: "t2i", Prompt: "seeded picture",
			Params: []byte(`{"width":512,"height":512,"steps":28,"guidance":3.5,"seed":-1}`), Status: "pending"}
		if err := db.CreateTask(ctx, task, store.CreateOptions{QueueMax: 0}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ClaimTask(ctx, task.ID, demo.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.StartTask(ctx, task.ID, demo.ID); err != nil {
			t.Fatal(err)
		}
		res, prev := "media/"+task.ID+".png", "media/"+task.ID+".preview.png"
		for _, p := range []string{res, prev} {
			if err := os.WriteFile(filepath.Join(srv.DataDir, p), png, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.CompleteTask(ctx, task.ID, res, "image/png", prev, "image/png"); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, task.ID)
	}
	return ids
}

// TestGalleryLoadsMore: past one page (24) the gallery brings in the rest, by
// scrolling or the `Load more` button, newest first, without duplicates.
func TestGalleryLoadsMore(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ids := seedDone(t, srv, 30)
	p := openBrowser(t, srv, desktop)
	p.open("/#/gallery")
	p.waitFor("the first page of cards", `document.querySelectorAll("main article[data-task-id]").length >= 24`, 10*time.Second)
	testutil.WaitFor(t, 10*time.Second, "all 30 cards after scrolling and Load more", func() bool {
		if eval[int](p, `document.querySelectorAll("main article[data-task-id]").length`) >= 30 {
			return true
		}
		eval[bool](p, `(() => { const b = [...document.querySelectorAll("main button")].find((b) => b.textContent.trim() === "Load more");
			if (b) { b.click(); } else { window.scrollTo(0, document.body.scrollHeight); } return true; })()`)
		return false
	})
	got := eval[[]string](p, articleIDs)
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Fatalf("cards %d in order %v, want all %d newest first", len(got), got, len(want))
	}
	p.waitFor("no Load more once everything is shown",
		`![...document.querySelectorAll("main button")].some((b) => b.textContent.trim() === "Load more")`, 5*time.Second)
	p.checkErrors()
}
