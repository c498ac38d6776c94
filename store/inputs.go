package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
)

// InputExt names the file extension of an input image's content type.
func InputExt(contentType string) string {
	switch contentType {
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	}
	return ".png"
}

// InputPath is where a task's input image lives, relative to the data dir.
func InputPath(taskID, contentType string) string {
	return "media/" + taskID + ".input" + InputExt(contentType)
}

// moveInputBlobs moves the input images a database from before schema step
// 3 kept in task_inputs into files beside the media (each written to a temp
// file, fsynced and renamed), one task per transaction, so a crash half-way
// leaves every image either still in its row or in its file.
func (db *DB) moveInputBlobs(dataDir string) error {
	ctx := context.Background()
	media := filepath.Join(dataDir, "media")
	for {
		var id string
		var img []byte
		err := db.writer.QueryRowContext(ctx, `SELECT task_id, image FROM task_inputs LIMIT 1`).Scan(&id, &img)
		if err == sql.ErrNoRows {
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: read an input image to move: %w", err)
		}
		ctype := sniffImage(img)
		rel := InputPath(id, ctype)
		if err := writeFileDurably(media, filepath.Base(rel), img); err != nil {
			return fmt.Errorf("store: move the input image of task %s: %w", id, err)
		}
		err = db.writeTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `UPDATE tasks SET input_path = ?, input_type = ?, input_bytes = ? WHERE id = ?`,
				rel, ctype, len(img), id); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `DELETE FROM task_inputs WHERE task_id = ?`, id)
			return err
		})
		if err != nil {
			return fmt.Errorf("store: move the input image of task %s: %w", id, err)
		}
	}
}

func sniffImage(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return "image/jpeg"
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "image/webp"
	}
	return "image/png"
}

// writeFileDurably writes dir/name through a temp file, fsync and rename,
// then fsyncs dir, with mode 0600.
func writeFileDurably(dir, name string, b []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
