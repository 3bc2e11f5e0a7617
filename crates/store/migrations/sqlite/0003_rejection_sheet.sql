-- A spreadsheet's rows are numbered per sheet: a rejection names the sheet its line is on.
ALTER TABLE rejections ADD COLUMN sheet TEXT;
