// engine/row_batch.hpp — a turn's new rows for one table, written at the
// commit in as few INSERT statements as possible (engine/store.hpp's
// batch() makes one per table; an app adds rows to it as its handlers
// decide, and the store flushes every batch just before COMMIT).
#pragma once
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

// Rows for one table, collected during a turn and written at its commit in
// multi-row INSERTs of up to ROWS_PER_INSERT rows: a statement's fixed cost
// (about half of a one-row insert) is paid once per batch instead of once
// per row. The statement for n rows is prepared the first time a batch of n
// comes along, then kept.
class RowBatch {
 public:
  RowBatch(const char* table, const char* columns, int width) : table_(table), columns_(columns), width_(width) {}
  ~RowBatch() { finalize(); }
  RowBatch(const RowBatch&) = delete;
  RowBatch& operator=(const RowBatch&) = delete;

  // A row is `width` calls of add(), in column order.
  void add(int64_t number) { cells_.push_back({number, {}, false}); }
  void add(std::string_view text) { cells_.push_back({0, std::string(text), true}); }
  template <class... Cells>
  void row(const Cells&... cells) {  // the `width` cells of one row at once
    (add(cells), ...);
  }

  // Writes and forgets the collected rows. On failure *error says why.
  bool flush(sqlite3* db, std::string* error) {
    size_t rows = cells_.size() / size_t(width_);
    bool ok = true;
    for (size_t at = 0; ok && at < rows; at += ROWS_PER_INSERT) {
      size_t n = std::min(rows - at, ROWS_PER_INSERT);
      sqlite3_stmt* st = statement(db, n);
      ok = st != nullptr;
      for (size_t i = 0; ok && i < n * size_t(width_); i++) {
        const Cell& c = cells_[at * size_t(width_) + i];
        if (c.is_text) sqlite3_bind_text(st, int(i + 1), c.text.data(), int(c.text.size()), SQLITE_STATIC);
        else sqlite3_bind_int64(st, int(i + 1), c.number);
      }
      ok = ok && sqlite3_step(st) == SQLITE_DONE;
      if (st) sqlite3_reset(st);
    }
    if (!ok) *error = std::string("writing ") + table_ + ": " + sqlite3_errmsg(db);
    cells_.clear();
    return ok;
  }

  void clear() { cells_.clear(); }
  size_t rows() const { return cells_.size() / size_t(width_); }

  void finalize() {
    for (sqlite3_stmt*& st : statements_) {
      sqlite3_finalize(st);
      st = nullptr;
    }
  }

 private:
  static constexpr size_t ROWS_PER_INSERT = 64;  // at most 64 x 5 = 320 parameters, far under SQLite's limit
  struct Cell {
    int64_t number;
    std::string text;
    bool is_text;
  };

  sqlite3_stmt* statement(sqlite3* db, size_t rows) {
    sqlite3_stmt*& st = statements_[rows - 1];
    if (st) return st;
    std::string tuple = "(?";
    for (int c = 1; c < width_; c++) tuple += ", ?";
    tuple += ")";
    std::string sql = std::string("INSERT INTO ") + table_ + " (" + columns_ + ") VALUES " + tuple;
    for (size_t r = 1; r < rows; r++) sql += ", " + tuple;
    if (sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK) st = nullptr;
    return st;
  }

  const char* table_;
  const char* columns_;
  int width_;
  std::vector<Cell> cells_;
  sqlite3_stmt* statements_[ROWS_PER_INSERT] = {};
};
