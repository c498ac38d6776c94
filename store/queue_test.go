package store

import (
	"errors"
	"fmt"
	"gooni/internal/testutil"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// queueTruth is what the queue index must say, counted from the rows the
// way QueuePosition and PendingAhead counted before the index existed.
func queueTruth(t *testing.T, db *DB, id string) (int, map[ModelMode]int) {
	t.Helper()
	var pos int
	err := db.reader.QueryRow(`SELECT CASE WHEN status = 'pending' AND account_id IS NULL THEN
		(SELECT count(*) FROM tasks p WHERE p.status = 'pending' AND p.account_id IS NULL AND p.id < t.id) + 1 ELSE 0 END
		FROM tasks t WHERE id = ?`, id).Scan(&pos)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.reader.Query(`SELECT model, mode, count(*) FROM tasks WHERE status = 'pending' AND id < ? GROUP BY model, mode`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	ahead := map[ModelMode]int{}
	for rows.Next() {
		var k ModelMode
		var n int
		if err := rows.Scan(&k.Model, &k.Mode, &n); err != nil {
			t.Fatal(err)
		}
		ahead[k] = n
	}
	return pos, ahead
}

// checkQueue compares the index with the rows for every task.
func checkQueue(t *testing.T, db *DB, step string) {
	t.Helper()
	ids, err := queryRows(bg, db.reader, func(r rowScanner) (string, error) {
		var id string
		return id, r.Scan(&id)
	}, `SELECT id FROM tasks ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	waiting := 0
	for _, id := range ids {
		wantPos, wantAhead := queueTruth(t, db, id)
		if wantPos > 0 {
			waiting++
		}
		pos, err := db.QueuePosition(bg, id)
		if err != nil || pos != wantPos {
			t.Fatalf("%s: QueuePosition(%s) = %d %v, counted %d", step, id, pos, err, wantPos)
		}
		task, err := db.GetTask(bg, id)
		if err != nil {
			t.Fatal(err)
		}
		if got := db.QueuePositionOf(task); got != wantPos {
			t.Fatalf("%s: QueuePositionOf(%s) = %d, counted %d", step, id, got, wantPos)
		}
		ahead, _ := db.PendingAhead(bg, id)
		if fmt.Sprint(ahead) != fmt.Sprint(wantAhead) {
			t.Fatalf("%s: PendingAhead(%s) = %v, counted %v", step, id, ahead, wantAhead)
		}
	}
	if n := db.QueueLength(); n != waiting {
		t.Fatalf("%s: QueueLength = %d, counted %d", step, n, waiting)
	}
	procs, err := db.ListProcessing(bg)
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, p := range procs {
		want = append(want, fmt.Sprintf("%s/%s@%d", p.Model, p.Mode, p.StartedAt.UnixMilli()))
	}
	for _, r := range db.Running() {
		got = append(got, fmt.Sprintf("%s/%s@%d", r.Kind.Model, r.Kind.Mode, r.StartedAt.UnixMilli()))
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Fatalf("%s: Running = %v, rows say %v", step, got, want)
	}
	// The dispatcher's view: tasks on a workspace, and their count per account.
	byAccount, _ := db.RunningByAccount(bg)
	wantBy, err := countBy[int64](bg, db.reader, `SELECT account_id, count(*) FROM tasks
		WHERE account_id IS NOT NULL AND status IN ('pending', 'processing') GROUP BY account_id`)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(byAccount) != fmt.Sprint(wantBy) {
		t.Fatalf("%s: RunningByAccount = %v, counted %v", step, byAccount, wantBy)
	}
	flying, err := db.ListInFlight(bg)
	if err != nil {
		t.Fatal(err)
	}
	wantFlying, err := db.queryTasks(bg, db.reader, `SELECT `+taskColumns+` FROM tasks
		WHERE status = 'processing' OR (status = 'pending' AND account_id IS NOT NULL) ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	idsOf := func(ts []*Task) (out []string) {
		for _, t := range ts {
			out = append(out, t.ID+"/"+t.Status)
		}
		return out
	}
	if !slices.Equal(idsOf(flying), idsOf(wantFlying)) {
		t.Fatalf("%s: ListInFlight = %v, rows say %v", step, idsOf(flying), idsOf(wantFlying))
	}
}

// TestQueueIndexFollowsEveryWrite drives every write that moves a task into,
// out of or within the queue, in a random order, and after each one
// compares queue_position, the ETA's counts and its list of processing
// tasks, and the dispatcher's tasks in flight and their count per account,
// with the rows;
// then reopens the database (the index is rebuilt) and compares again.
func TestQueueIndexFollowsEveryWrite(t *testing.T) {
	db, dir := openTest(t, testOptions(t))
	rng := rand.New(rand.NewPCG(17, 3))
	kinds := []ModelMode{{"flux", "t2i"}, {"pony", "t2i"}, {"anisora", "t2v"}}
	var accounts []int64
	made := 0
	addAccount := func() {
		made++
		a := newAccount(t, db, fmt.Sprintf("acc%d", made))
		accounts = append(accounts, a.ID)
	}
	addAccount()
	addAccount()
	var all []string
	pick := func(cond string, args ...any) (string, int64, bool) {
		rows, err := queryRows(bg, db.reader, func(r rowScanner) ([2]any, error) {
			var id string
			var acc *int64
			err := r.Scan(&id, &acc)
			var a int64
			if acc != nil {
				a = *acc
			}
			return [2]any{id, a}, err
		}, `SELECT id, account_id FROM tasks WHERE `+cond+` ORDER BY id`, args...)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			return "", 0, false
		}
		r := rows[rng.IntN(len(rows))]
		return r[0].(string), r[1].(int64), true
	}
	past := time.Now().Add(-time.Hour)
	for step := range 400 {
		var name string
		switch op := rng.IntN(13); op {
		case 0, 1:
			name = "create"
			var batch []*Task
			for range 1 + rng.IntN(3) {
				k := kinds[rng.IntN(len(kinds))]
				batch = append(batch, &Task{Type: "image", Model: k.Model, Mode: k.Mode, Prompt: "q"})
			}
			if err := db.CreateTasks(bg, batch, CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, tk := range batch {
				all = append(all, tk.ID)
			}
		case 2:
			// An older id lands in the middle of the queue.
			name = "seed pending"
			past = past.Add(time.Second)
			k := kinds[rng.IntN(len(kinds))]
			id := IDAt(past)
			status := StatusPending
			if rng.IntN(4) == 0 {
				status = StatusProcessing
			}
			if err := db.SeedTasks(bg, 1, func(int) Task {
				return Task{ID: id, Type: "image", Model: k.Model, Mode: k.Mode, Prompt: "s", Status: status, CreatedAt: past,
					StartedAt: past.Add(1500 * time.Microsecond)}
			}); err != nil {
				t.Fatal(err)
			}
			all = append(all, id)
		case 3, 4:
			name = "claim"
			if id, _, ok := pick(`status = 'pending' AND account_id IS NULL`); ok {
				if _, err := db.ClaimTask(bg, id, accounts[rng.IntN(len(accounts))]); err != nil {
					t.Fatal(err)
				}
			}
		case 5:
			name = "start"
			if id, acc, ok := pick(`status = 'pending' AND account_id IS NOT NULL`); ok {
				if _, err := db.StartTask(bg, id, acc); err != nil {
					t.Fatal(err)
				}
			}
		case 6:
			name = "release"
			if id, acc, ok := pick(`status = 'pending' AND account_id IS NOT NULL`); ok {
				if err := db.ReleaseTask(bg, id, acc); err != nil {
					t.Fatal(err)
				}
			}
		case 7:
			name = "requeue"
			if id, _, ok := pick(`status = 'processing' OR (status = 'pending' AND account_id IS NOT NULL)`); ok {
				if err := db.RequeueTask(bg, id, "test"); err != nil {
					t.Fatal(err)
				}
			}
		case 8:
			name = "requeue or fail"
			if id, acc, ok := pick(`status = 'processing' OR (status = 'pending' AND account_id IS NOT NULL)`); ok {
				if _, _, err := db.RequeueOrFail(bg, id, acc, "test", 2, func(int, []string) string { return "out of tries" }); err != nil {
					t.Fatal(err)
				}
			}
		case 9:
			name = "fail or cancel"
			if id, _, ok := pick(`status IN ('pending', 'processing')`); ok {
				var err error
				if rng.IntN(2) == 0 {
					err = db.FailTask(bg, id, "timeout", "x")
				} else {
					_, err = db.CancelTask(bg, id, "canceled")
				}
				if err != nil {
					t.Fatal(err)
				}
			}
		case 10:
			name = "complete"
			if id, _, ok := pick(`status = 'processing'`); ok {
				if err := db.CompleteTask(bg, id, "media/r.png", "image/png", "media/p.png", "image/png"); err != nil {
					t.Fatal(err)
				}
			}
		case 11:
			name = "delete"
			if len(all) > 0 {
				id := all[rng.IntN(len(all))]
				if err := db.DeleteTask(bg, id); err == nil {
					all = slices.DeleteFunc(all, func(s string) bool { return s == id })
				}
			}
		case 12:
			// An account goes with tasks handed to it: DeleteAccount puts
			// them back in the queue, RemoveAccountAudited fails them.
			i := rng.IntN(len(accounts))
			var err error
			if rng.IntN(2) == 0 {
				name = "delete account"
				err = db.DeleteAccount(bg, accounts[i])
			} else {
				name = "remove account"
				_, err = db.RemoveAccountAudited(bg, accounts[i], "worker_removed", "gone", nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			accounts = slices.Delete(accounts, i, i+1)
			addAccount()
		}
		checkQueue(t, db, fmt.Sprintf("step %d (%s)", step, name))
	}
	if db.QueueLength() == 0 {
		t.Fatal("the walk ended with an empty queue; it tested too little")
	}
	before := db.QueueLength()
	db.Close()
	db2, err := Open(filepath.Clean(dir), testutil.Schema(t), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if db2.QueueLength() != before {
		t.Fatalf("reopened: %d waiting, had %d", db2.QueueLength(), before)
	}
	checkQueue(t, db2, "reopened")
}

// TestIDSetKeepsOrderAcrossBlocks fills an idSet past several blocks in a
// random order, removes a random half, and checks every rank.
func TestIDSetKeepsOrderAcrossBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s idSet
	var ids []string
	for i := range 3 * idBlock {
		ids = append(ids, fmt.Sprintf("id%06d", i))
	}
	for _, i := range rng.Perm(len(ids)) {
		s.insert(ids[i])
		s.insert(ids[i]) // a second insert is a no-op
	}
	kept := map[string]bool{}
	for _, id := range ids {
		kept[id] = true
	}
	for _, i := range rng.Perm(len(ids))[:len(ids)/2] {
		s.remove(ids[i])
		s.remove(ids[i])
		delete(kept, ids[i])
	}
	s.remove("absent")
	if s.len() != len(kept) {
		t.Fatalf("len %d, want %d", s.len(), len(kept))
	}
	rank := 0
	for _, id := range ids {
		r, found := s.rank(id)
		if r != rank || found != kept[id] {
			t.Fatalf("rank(%s) = %d %v, want %d %v", id, r, found, rank, kept[id])
		}
		if kept[id] {
			rank++
		}
	}
	if r, found := s.rank("zzz"); r != len(kept) || found {
		t.Fatalf("rank past the end = %d %v", r, found)
	}
}

// TestReleasedTaskWaitsInTheQueueAgain: a task a busy workspace gives back
// (ReleaseTask) is at its place in Gooni's queue again and no longer takes a
// slot of that account's capacity, so the dispatcher can hand it out again.
func TestReleasedTaskWaitsInTheQueueAgain(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	acc := newAccount(t, db, "busy")
	first, second := newTask("first"), newTask("second")
	if err := db.CreateTasks(bg, []*Task{first, second}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	state := func(step string, wantFirst, wantSecond, wantSlots int) {
		t.Helper()
		p1, err1 := db.QueuePosition(bg, first.ID)
		p2, err2 := db.QueuePosition(bg, second.ID)
		by, _ := db.RunningByAccount(bg)
		flying, err3 := db.ListInFlight(bg)
		if err1 != nil || err2 != nil || err3 != nil || p1 != wantFirst || p2 != wantSecond || by[acc.ID] != wantSlots ||
			len(flying) != wantSlots || db.QueueLength() != 2-wantSlots {
			t.Fatalf("%s: positions %d %d, slots taken %d, in flight %d, queue length %d (%v %v %v); want %d %d, %d slots",
				step, p1, p2, by[acc.ID], len(flying), db.QueueLength(), err1, err2, err3, wantFirst, wantSecond, wantSlots)
		}
	}
	state("created", 1, 2, 0)
	if _, err := db.ClaimTask(bg, first.ID, acc.ID); err != nil {
		t.Fatal(err)
	}
	state("handed to the account", 0, 1, 1)
	if err := db.ReleaseTask(bg, first.ID, acc.ID); err != nil {
		t.Fatal(err)
	}
	state("given back", 1, 2, 0)
}

// TestDeletedTaskLeavesTheQueue: deleting a waiting task takes it out of
// Gooni's queue: the tasks behind it move up.
func TestDeletedTaskLeavesTheQueue(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	first, second := newTask("first"), newTask("second")
	if err := db.CreateTasks(bg, []*Task{first, second}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteTask(bg, first.ID); err != nil {
		t.Fatal(err)
	}
	if pos, err := db.QueuePosition(bg, second.ID); err != nil || pos != 1 || db.QueueLength() != 1 {
		t.Fatalf("after the first task was deleted: position %d (%v), queue length %d; want 1, 1", pos, err, db.QueueLength())
	}
	if _, err := db.QueuePosition(bg, first.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("position of the deleted task: %v, want ErrNotFound", err)
	}
}
