package store

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gooni/internal/testutil"
)

// noIdleIndexing keeps db's committer from indexing waiting prompts when it
// is idle (searchIdle), for tests that count waiting prompts or COMMITs: a
// stall of the test machine must not index them behind the test's back.
func noIdleIndexing(db *DB) { db.searchIdle.Store(int64(time.Hour)) }

// waitingForIndex counts the tasks whose prompts are not indexed yet.
func waitingForIndex(t testing.TB, db *DB) int {
	t.Helper()
	var n int
	if err := db.reader.QueryRow(`SELECT count(*) FROM search_pending`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// listIDs returns the ids of the page ListTasks gives for f, in its order.
func listIDs(t testing.TB, db *DB, f TaskFilter) []string {
	t.Helper()
	items, _, err := db.ListTasks(bg, f)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	return ids
}

// searchIDs returns the ids ListTasks finds for q (up to 100), in its order.
func searchIDs(t testing.TB, db *DB, q string) []string {
	t.Helper()
	return listIDs(t, db, TaskFilter{Query: q, Limit: 100})
}

// TestSearchSeesTasksNotYetIndexed: a task created a moment ago is found by
// q and counted by CountTasks while its prompt still waits for the index
// (fewer than searchBatch tasks, no pause of searchIdle yet): the search
// indexes what waits before it reads.
func TestSearchSeesTasksNotYetIndexed(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	noIdleIndexing(db)
	task := ctlTask("a lighthouse at dusk")
	if err := db.CreateTasks(bg, []*Task{task, ctlTask("a harbour")}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := waitingForIndex(t, db); n != 2 {
		t.Fatalf("%d tasks wait for the index right after their COMMIT, want 2 (indexed at once?)", n)
	}
	if got := searchIDs(t, db, "lighthouse"); len(got) != 1 || got[0] != task.ID {
		t.Fatalf("q=lighthouse found %v, want [%s]", got, task.ID)
	}
	if n := waitingForIndex(t, db); n != 0 {
		t.Errorf("%d tasks still wait after a search", n)
	}
	another := ctlTask("another lighthouse")
	if err := db.CreateTask(bg, another, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, more, err := db.CountTasks(bg, TaskFilter{Query: "lighthouse"}, 0); err != nil || n != 2 || more {
		t.Errorf("count of q=lighthouse = %d (more %v, %v), want 2", n, more, err)
	}
}

// TestWaitingPromptsAreIndexed: without any search, the prompts of created
// tasks reach the index in a submit's own transaction once searchBatch
// wait, and after a pause of searchIdle otherwise.
func TestWaitingPromptsAreIndexed(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	for i := range searchBatch - 1 {
		if err := db.CreateTask(bg, ctlTask(fmt.Sprintf("word%d", i)), CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The pause indexes them (searchIdle after the last submit).
	testutil.WaitFor(t, 5*time.Second, "the idle committer to index the waiting prompts", func() bool {
		return waitingForIndex(t, db) == 0
	})

	// A steady stream, no idle indexing: after each COMMIT fewer than
	// searchBatch wait, and the batch that brings them to searchBatch
	// indexes them all.
	db2, _ := openTest(t, testOptions(t))
	noIdleIndexing(db2)
	most := 0
	for i := range 3 * searchBatch {
		if err := db2.CreateTask(bg, ctlTask(fmt.Sprintf("word%d", i)), CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// One index run per searchBatch tasks, not one per batch after
		// the first run.
		waiting := waitingForIndex(t, db2)
		if want := (i + 1) % searchBatch; waiting != want {
			t.Fatalf("after task %d: %d prompts wait, want %d", i+1, waiting, want)
		}
		most = max(most, waiting)
	}
	if most != searchBatch-1 {
		t.Errorf("at most %d prompts waited after a COMMIT, want %d", most, searchBatch-1)
	}
	var indexed int
	db2.reader.QueryRow(`SELECT count(*) FROM task_search`).Scan(&indexed)
	if indexed+waitingForIndex(t, db2) != 3*searchBatch {
		t.Errorf("%d indexed and %d waiting of %d tasks", indexed, waitingForIndex(t, db2), 3*searchBatch)
	}
}

// TestDeletingATaskThatWaitsForTheIndex: a task deleted before its prompt
// was indexed leaves nothing behind, and the next indexing works.
func TestDeletingATaskThatWaitsForTheIndex(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	noIdleIndexing(db)
	gone, kept := ctlTask("a red kite"), ctlTask("a red fox")
	if err := db.CreateTasks(bg, []*Task{gone, kept}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteTask(bg, gone.ID); err != nil {
		t.Fatal(err)
	}
	if n := waitingForIndex(t, db); n != 1 {
		t.Fatalf("%d tasks wait after deleting one of two, want 1", n)
	}
	if got := searchIDs(t, db, "red"); len(got) != 1 || got[0] != kept.ID {
		t.Fatalf("q=red found %v, want only [%s]", got, kept.ID)
	}
	// Deleting an indexed task takes it out of the index too.
	if err := db.DeleteTask(bg, kept.ID); err != nil {
		t.Fatal(err)
	}
	if got := searchIDs(t, db, "red"); len(got) != 0 {
		t.Fatalf("q=red after deleting both found %v", got)
	}
	var rows int
	db.reader.QueryRow(`SELECT count(*) FROM task_search`).Scan(&rows)
	if rows != 0 {
		t.Errorf("%d task_search rows left for deleted tasks", rows)
	}
}

// TestSearchOrderAcrossIndexRuns: tasks indexed in separate runs (and some
// in one run) come back newest first, as created.
func TestSearchOrderAcrossIndexRuns(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	var want []string
	for run := range 3 {
		var tasks []*Task
		for i := range 3 {
			tasks = append(tasks, ctlTask(fmt.Sprintf("comet %d %d", run, i)))
		}
		if err := db.CreateTasks(bg, tasks, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, tk := range tasks {
			want = append([]string{tk.ID}, want...)
		}
		if run < 2 {
			searchIDs(t, db, "comet") // indexes this run's tasks
		}
	}
	if got := searchIDs(t, db, "comet"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("order %v, want newest first %v", got, want)
	}
	// Keyset pages follow the same order.
	page, next, err := db.ListTasks(bg, TaskFilter{Query: "comet", Limit: 4})
	if err != nil || len(page) != 4 || next != want[3] {
		t.Fatalf("first page %d items, next %q (%v), want 4 and %q", len(page), next, err, want[3])
	}
	rest, _, err := db.ListTasks(bg, TaskFilter{Query: "comet", Limit: 100, Cursor: next})
	if err != nil || len(rest) != len(want)-4 || rest[0].ID != want[4] {
		t.Fatalf("second page: %d items (%v), want %d from %s", len(rest), err, len(want)-4, want[4])
	}
}

// TestSearchCursorOfADeletedTask: with q, the cursor of a task deleted
// since still pages on from its place, as without q; so does a
// well-formed id that never was a task (newer than all, or between two).
func TestSearchCursorOfADeletedTask(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	var ids []string // newest first
	for i := range 6 {
		task := ctlTask(fmt.Sprintf("zebra crossing %d", i))
		if err := db.CreateTask(bg, task, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ids = append([]string{task.ID}, ids...)
	}
	page := func(cursor string) []string {
		t.Helper()
		return listIDs(t, db, TaskFilter{Query: "zebra", Limit: 2, Cursor: cursor})
	}
	if got := page(ids[1]); strings.Join(got, ",") != ids[2]+","+ids[3] {
		t.Fatalf("page after %s: %v, want %v", ids[1], got, ids[2:4])
	}
	if err := db.DeleteTask(bg, ids[1]); err != nil {
		t.Fatal(err)
	}
	if got := page(ids[1]); strings.Join(got, ",") != ids[2]+","+ids[3] {
		t.Fatalf("page after the deleted %s: %v, want %v", ids[1], got, ids[2:4])
	}
	if got := page("7ZZZZZZZZZZZZZZZZZZZZZZZZZ"); strings.Join(got, ",") != ids[0]+","+ids[2] {
		t.Fatalf("page after an id newer than all: %v, want %v", got, []string{ids[0], ids[2]})
	}
}

// TestWaitingPromptsSurviveARestart: tasks whose prompts still wait when
// the store closes are found after it opens again; opening does not index
// them (the offline commands, a backup among them, open the store too).
func TestWaitingPromptsSurviveARestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	opts := testOptions(t)
	db, err := Open(dir, testutil.Schema(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	noIdleIndexing(db)
	task := ctlTask("an orchard in spring")
	if err := db.CreateTask(bg, task, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(dir, testutil.Schema(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	time.Sleep(2 * searchIdle)
	if n := waitingForIndex(t, db); n != 1 {
		t.Fatalf("%d prompts wait after the restart, want the 1 left waiting (Open indexed it?)", n)
	}
	if got := searchIDs(t, db, "orchard"); len(got) != 1 || got[0] != task.ID {
		t.Fatalf("q=orchard after a restart found %v, want [%s]", got, task.ID)
	}
	if n := waitingForIndex(t, db); n != 0 {
		t.Errorf("%d prompts wait after the search", n)
	}
}

// TestFailedIndexingKeepsTheSubmits: when indexing fails inside a batch,
// the batch's submits still commit and their prompts keep waiting, with
// nothing of the failed run kept; a search then fails rather than answer
// without them, and finds them once indexing works again. Two failures:
// the FTS5 table renamed away (the index insert fails), and a trigger that
// refuses to empty search_pending (the last step fails).
func TestFailedIndexingKeepsTheSubmits(t *testing.T) {
	cases := []struct{ name, breakIt, fixIt string }{
		{"the index insert fails", `ALTER TABLE tasks_fts RENAME TO tasks_fts_away`, `ALTER TABLE tasks_fts_away RENAME TO tasks_fts`},
		{"emptying the waiting list fails", `CREATE TRIGGER refuse BEFORE DELETE ON search_pending BEGIN SELECT RAISE(ABORT, 'refused'); END`, `DROP TRIGGER refuse`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, _ := openTest(t, testOptions(t))
			noIdleIndexing(db)
			if _, err := db.writer.Exec(c.breakIt); err != nil {
				t.Fatal(err)
			}
			for i := range searchBatch + 1 {
				if err := db.CreateTask(bg, ctlTask(fmt.Sprintf("a beacon %d", i)), CreateOptions{}); err != nil {
					t.Fatalf("submit %d while indexing fails: %v", i, err)
				}
			}
			if n := waitingForIndex(t, db); n != searchBatch+1 {
				t.Fatalf("%d prompts wait, want all %d (a failed index run must leave them)", n, searchBatch+1)
			}
			var mapped int
			db.reader.QueryRow(`SELECT count(*) FROM task_search`).Scan(&mapped)
			if mapped != 0 {
				t.Fatalf("%d task_search rows kept from a failed index run", mapped)
			}
			if _, _, err := db.ListTasks(bg, TaskFilter{Query: "beacon"}); err == nil {
				t.Fatal("a search answered while the prompts it must index could not be indexed")
			}
			if _, err := db.writer.Exec(c.fixIt); err != nil {
				t.Fatal(err)
			}
			if got := searchIDs(t, db, "beacon"); len(got) != searchBatch+1 {
				t.Fatalf("q=beacon found %d tasks once indexing works, want %d", len(got), searchBatch+1)
			}
		})
	}
}

// TestConcurrentSearchesIndexOnce: searches that start together while
// prompts wait run one indexing transaction between them, and all find
// the waiting task.
func TestConcurrentSearchesIndexOnce(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	noIdleIndexing(db)
	task := ctlTask("a quiet lagoon")
	if err := db.CreateTask(bg, task, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var commits atomic.Int64
	onCommit(t, db, func() int32 { commits.Add(1); return 0 })
	const n = 20
	var wg sync.WaitGroup
	found := make([][]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			found[i] = searchIDs(t, db, "lagoon")
		}()
	}
	wg.Wait()
	for i, got := range found {
		if len(got) != 1 || got[0] != task.ID {
			t.Fatalf("search %d found %v, want [%s]", i, got, task.ID)
		}
	}
	if c := commits.Load(); c != 1 {
		t.Errorf("%d searches made %d COMMITs, want 1", n, c)
	}
}

// TestSearchIndexMigration: tasks of a database from before step 8 stay
// found after it, and tasks created after it are found too.
func TestSearchIndexMigration(t *testing.T) {
	before := ctlTask("a windmill before")
	db, _ := openMigrated(t, 8, func(old *DB) {
		if err := old.CreateTask(bg, before, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	after := ctlTask("a windmill after")
	if err := db.CreateTask(bg, after, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := searchIDs(t, db, "windmill"); strings.Join(got, ",") != after.ID+","+before.ID {
		t.Fatalf("q=windmill across the migration found %v, want [%s %s]", got, after.ID, before.ID)
	}
	if err := db.DeleteTask(bg, before.ID); err != nil {
		t.Fatal(err)
	}
	if got := searchIDs(t, db, "windmill"); len(got) != 1 || got[0] != after.ID {
		t.Fatalf("after deleting the old task q=windmill found %v", got)
	}
}
