//! The outbox gallery: `outbox/gallery/index.html`, the finished jobs newest first, each a
//! card with the original and its results side by side.
//!
//! ```text
//! outbox/gallery/index.html       the latest PAGE_SIZE jobs, links to the pages before
//! outbox/gallery/page-0001.html   jobs 1..=PAGE_SIZE, written once when full, and so on
//! outbox/gallery/pages.html       every page, written when a page fills
//! outbox/gallery/thumbs/          <job>-o.jpg (the original), <job>-1.jpg ... (the results)
//! outbox/gallery/.state.json      how far into jobs.jsonl the gallery is, the latest jobs
//! ```
//! The gallery follows `logs/jobs.jsonl`, never the other way round: an update reads the
//! lines after the last one it took (its byte offset), so the cost of an update does not grow
//! with the history, a line is never taken twice, and a crash between a job's line and the
//! gallery is repaired by the next update. Every file is written whole (temporary, rename);
//! a lock file keeps the daemon and `drawdrop gallery` from writing at once.

mod entry;
pub mod html;
mod keeper;
pub mod thumbs;

pub use entry::Entry;
pub use keeper::{Feed, Keeper};

use crate::jobs::durable;
use crate::jobs::outbox::Outbox;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Jobs per page, and on the index.
pub const PAGE_SIZE: usize = 100;
/// The newest pages linked from every page; `pages.html` lists them all.
const LINKED_PAGES: usize = 5;
/// While catching up on a long history, the index and state are written this often.
const CHECKPOINT: Duration = Duration::from_secs(2);
/// Bumped when the state's shape changes: an older state is rebuilt from jobs.jsonl.
const STATE_VERSION: u32 = 1;

/// The gallery of one outbox.
#[derive(Debug, Clone)]
pub struct Gallery {
    outbox: PathBuf,
    dir: PathBuf,
    jobs_log: PathBuf,
}

/// What an update did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Updated {
    /// Jobs added to the gallery.
    pub added: usize,
    /// Jobs the gallery shows in all.
    pub total: u64,
    /// Whether lines of jobs.jsonl are left for the next update (it was asked to stop).
    pub behind: bool,
}

/// How far the gallery is, kept in `.state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    /// Bytes of jobs.jsonl taken (always the end of a line).
    offset: u64,
    total: u64,
    failed: u64,
    /// The latest jobs, oldest first: the index, and the next page once it is full.
    recent: VecDeque<Entry>,
    /// The newest full pages, oldest first.
    pages: Vec<PageInfo>,
}

/// One full page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PageInfo {
    number: u64,
    /// When its first and its last job finished.
    first: String,
    last: String,
}

impl PageInfo {
    fn file(&self) -> String {
        page_file(self.number)
    }

    fn label(&self) -> String {
        let day = |time: &str| time.chars().take(10).collect::<String>();
        let (first, last) = (day(&self.first), day(&self.last));
        if first == last {
            format!("page {} · {first}", self.number)
        } else {
            format!("page {} · {first} – {last}", self.number)
        }
    }
}

fn page_file(number: u64) -> String {
    format!("page-{number:04}.html")
}

impl Gallery {
    pub fn new(outbox: &Outbox) -> Gallery {
        Gallery {
            outbox: outbox.root().to_path_buf(),
            dir: outbox.gallery(),
            jobs_log: outbox.jobs_log(),
        }
    }

    pub fn index(&self) -> PathBuf {
        self.dir.join("index.html")
    }

    pub fn thumbs(&self) -> PathBuf {
        self.dir.join("thumbs")
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join(".state.json")
    }

    fn pages_log(&self) -> PathBuf {
        self.dir.join(".pages.jsonl")
    }

    /// Takes the jobs.jsonl lines written since the last update: thumbnails, the page that
    /// filled, the index. `stop` is asked between jobs; what is left waits for the next update.
    pub fn update(&self, stop: &dyn Fn() -> bool) -> io::Result<Updated> {
        durable::create_dir_all(&self.thumbs())?;
        let _lock = self.lock()?;
        let state = self.load_state();
        self.take_new_lines(state, stop)
    }

    /// Makes the gallery again from all of jobs.jsonl and what is in the outbox now (kept
    /// thumbnails are used again).
    pub fn rebuild(&self) -> io::Result<Updated> {
        durable::create_dir_all(&self.thumbs())?;
        let _lock = self.lock()?;
        self.clear_temporaries()?;
        self.take_new_lines(self.fresh_state()?, &|| false)
    }

    /// The first update of a run: first removes what an interrupted write left.
    pub fn update_after_start(&self, stop: &dyn Fn() -> bool) -> io::Result<Updated> {
        durable::create_dir_all(&self.thumbs())?;
        let _lock = self.lock()?;
        self.clear_temporaries()?;
        let state = self.load_state();
        self.take_new_lines(state, stop)
    }

    /// Removes the temporary files a crash left in the middle of a write.
    fn clear_temporaries(&self) -> io::Result<()> {
        for folder in [self.dir.clone(), self.thumbs()] {
            for entry in fs::read_dir(&folder)?.filter_map(Result::ok) {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    durable::remove_file(&entry.path())?;
                }
            }
        }
        Ok(())
    }

    fn take_new_lines(&self, mut state: State, stop: &dyn Fn() -> bool) -> io::Result<Updated> {
        let mut updated = Updated::default();
        let mut file = match File::open(&self.jobs_log) {
            Ok(file) => Some(file),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        let goes_on = match &mut file {
            Some(open) => follows(open, state.offset)?,
            None => false,
        };
        if state.offset == 0 || !goes_on {
            // New, or jobs.jsonl was replaced or cut short: from its beginning.
            state = self.fresh_state()?;
        }
        let mut changed = !self.index().exists();
        let mut last_write = Instant::now();
        if let Some(mut file) = file {
            file.seek(SeekFrom::Start(state.offset))?;
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            loop {
                if stop() {
                    updated.behind = true;
                    break;
                }
                line.clear();
                let read = reader.read_until(b'\n', &mut line)?;
                if read == 0 || line.last() != Some(&b'\n') {
                    break; // The end, or a line still being written.
                }
                state.offset += read as u64;
                let Some(entry) = serde_json::from_slice(&line)
                    .ok()
                    .and_then(|record| Entry::from_record(&record))
                else {
                    continue;
                };
                if state.recent.iter().any(|seen| seen.key == entry.key) {
                    continue;
                }
                self.add(&mut state, entry)?;
                updated.added += 1;
                changed = true;
                if last_write.elapsed() > CHECKPOINT {
                    self.write_index(&state)?;
                    self.save_state(&state)?;
                    last_write = Instant::now();
                }
            }
        }
        if changed {
            self.write_index(&state)?;
            self.save_state(&state)?;
        }
        updated.total = state.total;
        Ok(updated)
    }

    /// One more job: its thumbnails, and the page it fills.
    fn add(&self, state: &mut State, mut entry: Entry) -> io::Result<()> {
        let stem = file_safe(&entry.key);
        if let Some(original) = &entry.original {
            entry.original_thumb = self.thumbnail(original, &format!("{stem}-o.jpg"));
        }
        entry.output_thumbs = entry
            .outputs
            .iter()
            .enumerate()
            .map(|(index, output)| self.thumbnail(output, &format!("{stem}-{}.jpg", index + 1)))
            .collect();
        state.total += 1;
        state.failed += u64::from(entry.failed);
        state.recent.push_back(entry);
        if state.recent.len() > PAGE_SIZE {
            state.recent.pop_front();
        }
        if state.total.is_multiple_of(PAGE_SIZE as u64) {
            self.write_full_page(state)?;
        }
        Ok(())
    }

    /// The thumbnail `name` of `file` (relative to the outbox), made unless it exists.
    fn thumbnail(&self, file: &Path, name: &str) -> Option<String> {
        let destination = self.thumbs().join(name);
        if destination.is_file() {
            return Some(name.to_owned());
        }
        let source = self.outbox.join(file);
        if !source.is_file() {
            return None;
        }
        match thumbs::make(&source, &destination) {
            Ok(()) => Some(name.to_owned()),
            Err(error) => {
                tracing::debug!("no thumbnail for {}: {error}", file.display());
                None
            }
        }
    }

    /// `recent` holds exactly the jobs of the page that just filled.
    fn write_full_page(&self, state: &mut State) -> io::Result<()> {
        let number = state.total / PAGE_SIZE as u64;
        let info = PageInfo {
            number,
            first: state
                .recent
                .front()
                .map(|e| e.time.clone())
                .unwrap_or_default(),
            last: state
                .recent
                .back()
                .map(|e| e.time.clone())
                .unwrap_or_default(),
        };
        let mut links = vec![("latest".to_owned(), "index.html".to_owned())];
        if number > 1 {
            links.push(("older".to_owned(), page_file(number - 1)));
        }
        links.push(("all pages".to_owned(), "pages.html".to_owned()));
        let title = format!("drawdrop gallery · page {number}");
        let html = self.render(
            &title,
            format!(
                "jobs {} to {}, newest first",
                (number - 1) * PAGE_SIZE as u64 + 1,
                number * PAGE_SIZE as u64
            ),
            &state.recent,
            links,
        );
        durable::write_replacing(&self.dir.join(info.file()), html.as_bytes())?;
        let mut line = serde_json::to_string(&info).map_err(io::Error::other)?;
        line.push('\n');
        append(&self.pages_log(), line.as_bytes())?;
        state.pages.push(info);
        if state.pages.len() > LINKED_PAGES {
            state.pages.remove(0);
        }
        self.write_pages_list()
    }

    /// `pages.html`: every full page, newest first (written when a page fills).
    fn write_pages_list(&self) -> io::Result<()> {
        let text = fs::read_to_string(self.pages_log()).unwrap_or_default();
        let pages: Vec<PageInfo> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let mut links = vec![("latest".to_owned(), "index.html".to_owned())];
        links.extend(pages.iter().rev().map(|page| (page.label(), page.file())));
        let html = html::page(&html::View {
            title: "drawdrop gallery · all pages",
            summary: format!("{} pages of {PAGE_SIZE} jobs, newest first", pages.len()),
            entries: Vec::new(),
            links,
            exists: &|_| true,
        });
        durable::write_replacing(&self.dir.join("pages.html"), html.as_bytes())
    }

    fn write_index(&self, state: &State) -> io::Result<()> {
        let mut summary = format!(
            "{} job{}",
            state.total,
            if state.total == 1 { "" } else { "s" }
        );
        if state.failed > 0 {
            summary.push_str(&format!(", {} failed", state.failed));
        }
        if state.total > state.recent.len() as u64 {
            summary.push_str(&format!(" · the latest {} here", state.recent.len()));
        }
        summary.push_str(" · newest first");
        let mut links: Vec<(String, String)> = state
            .pages
            .iter()
            .rev()
            .map(|page| (page.label(), page.file()))
            .collect();
        if !links.is_empty() {
            links.push(("all pages".to_owned(), "pages.html".to_owned()));
        }
        let html = self.render("drawdrop gallery", summary, &state.recent, links);
        durable::write_replacing(&self.index(), html.as_bytes())
    }

    fn render(
        &self,
        title: &str,
        summary: String,
        entries: &VecDeque<Entry>,
        links: Vec<(String, String)>,
    ) -> String {
        let exists = |relative: &Path| self.outbox.join(relative).exists();
        html::page(&html::View {
            title,
            summary,
            entries: entries.iter().rev().collect(),
            links,
            exists: &exists,
        })
    }

    fn load_state(&self) -> State {
        fs::read(self.state_file())
            .ok()
            .and_then(|text| serde_json::from_slice::<State>(&text).ok())
            .filter(|state| state.version == STATE_VERSION)
            .unwrap_or_default()
    }

    fn save_state(&self, state: &State) -> io::Result<()> {
        let state = State {
            version: STATE_VERSION,
            ..state.clone()
        };
        let text = serde_json::to_vec(&state).map_err(io::Error::other)?;
        durable::write_replacing(&self.state_file(), &text)
    }

    /// A state from the beginning of jobs.jsonl; the pages of an earlier one are forgotten.
    fn fresh_state(&self) -> io::Result<State> {
        durable::remove_file(&self.pages_log())?;
        Ok(State {
            version: STATE_VERSION,
            ..State::default()
        })
    }

    /// Held while the gallery is written (the daemon and `drawdrop gallery` may both try).
    fn lock(&self) -> io::Result<File> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))?;
        file.lock()?;
        Ok(file)
    }
}

/// Whether the file goes on from `offset`: at least that long, with a line ending just
/// before it (else it was replaced or cut, and the offset means nothing).
fn follows(file: &mut File, offset: u64) -> io::Result<bool> {
    if offset == 0 {
        return Ok(true);
    }
    if file.metadata()?.len() < offset {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(offset - 1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(bytes)
}

/// A job id as a file name: letters, digits, `-` and `_` only.
fn file_safe(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    struct Fixture {
        _dir: tempfile::TempDir,
        outbox: Outbox,
        gallery: Gallery,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path().join("out"));
        outbox.create().unwrap();
        let gallery = Gallery::new(&outbox);
        Fixture {
            _dir: dir,
            outbox,
            gallery,
        }
    }

    fn record(n: usize) -> String {
        let failed = n % 7 == 3;
        let name = format!("p/cat {n}.png");
        let value = if failed {
            json!({"time": format!("2026-11-{:02}T10:00:00.000+01:00", 1 + n / 1000), "job": format!("job-{n}"),
                "input": name, "outcome": "failed", "profile": "p", "server": "mini",
                "outputs": [], "failed_as": format!("failed/{name}"), "error": "the server answered 500", "total_ms": 10})
        } else {
            json!({"time": format!("2026-11-{:02}T10:00:00.000+01:00", 1 + n / 1000), "job": format!("job-{n}"),
                "input": name, "outcome": "done", "profile": "p", "server": "mini",
                "settings": {"prompt": format!("prompt {n}"), "seed": n}, "outputs": [name],
                "original": format!("originals/{name}"), "total_ms": 1000})
        };
        value.to_string()
    }

    impl Fixture {
        fn append(&self, n: usize) {
            self.outbox.append_job_line(&record(n)).unwrap();
        }

        fn picture(&self, relative: &str) {
            let path = self.outbox.root().join(relative);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let picture =
                image::RgbImage::from_fn(300, 200, |x, y| image::Rgb([x as u8, y as u8, 7]));
            picture.save(&path).unwrap();
        }

        /// Every file of the gallery (its lock aside) and its bytes.
        fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
            durable::files_under(&self.outbox.gallery())
                .unwrap()
                .into_iter()
                .filter(|path| path != Path::new(".lock"))
                .map(|path| {
                    let bytes = fs::read(self.outbox.gallery().join(&path)).unwrap();
                    (path, bytes)
                })
                .collect()
        }

        fn read(&self, name: &str) -> String {
            fs::read_to_string(self.outbox.gallery().join(name)).unwrap()
        }
    }

    fn cards(html: &str) -> usize {
        html.matches("<article ").count()
    }

    #[test]
    fn ten_thousand_jobs_make_pages_of_a_bounded_size() {
        let f = fixture();
        let mut lines = String::new();
        for n in 0..10_000 {
            lines.push_str(&record(n));
            lines.push('\n');
        }
        fs::write(f.outbox.jobs_log(), lines).unwrap();
        let updated = f.gallery.update(&|| false).unwrap();
        assert_eq!(updated.total, 10_000);
        assert_eq!(updated.added, 10_000);
        let pages: Vec<PathBuf> = f
            .files()
            .into_keys()
            .filter(|p| p.to_string_lossy().starts_with("page-"))
            .collect();
        assert_eq!(pages.len(), 100);
        for page in &pages {
            assert_eq!(
                cards(&f.read(&page.to_string_lossy())),
                PAGE_SIZE,
                "{page:?}"
            );
        }
        let index = f.read("index.html");
        assert_eq!(cards(&index), PAGE_SIZE);
        assert!(index.contains("10000 jobs, 1429 failed"), "the counts");
        assert!(
            index.find("job-9999").unwrap() < index.find("job-9998").unwrap(),
            "newest first"
        );
        assert!(index.contains("href=\"page-0100.html\""));
        assert!(index.len() < 400_000, "index of {} bytes", index.len());
        assert_eq!(f.read("pages.html").matches("href=\"page-").count(), 100);
        let first = f.read("page-0001.html");
        assert!(
            first.contains("job-0\"") && first.contains("job-99\"") && !first.contains("job-100\"")
        );
        // The next job costs one page's work, not the history's.
        assert!(fs::metadata(f.gallery.state_file()).unwrap().len() < 100_000);
        f.append(10_000);
        assert_eq!(f.gallery.update(&|| false).unwrap().added, 1);
        assert!(f.read("index.html").contains("job-10000\""));
    }

    #[test]
    fn a_rebuild_from_jobs_jsonl_equals_the_gallery_kept_job_by_job() {
        let f = fixture();
        for n in 0..230 {
            if n % 50 == 0 {
                f.picture(&format!("p/cat {n}.png"));
                f.picture(&format!("originals/p/cat {n}.png"));
            }
            f.append(n);
            f.gallery.update(&|| false).unwrap();
        }
        let kept = f.files();
        assert!(kept.contains_key(Path::new("thumbs/job-50-1.jpg")));
        assert!(kept.contains_key(Path::new("thumbs/job-50-o.jpg")));
        assert!(kept.contains_key(Path::new("page-0002.html")));
        fs::remove_dir_all(f.outbox.gallery()).unwrap();
        assert_eq!(f.gallery.rebuild().unwrap().total, 230);
        let rebuilt = f.files();
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            rebuilt.keys().collect::<Vec<_>>()
        );
        for (path, bytes) in &kept {
            if path.extension().is_some_and(|e| e == "html") {
                assert_eq!(
                    String::from_utf8_lossy(bytes),
                    String::from_utf8_lossy(&rebuilt[path]),
                    "{path:?}"
                );
            }
        }
        assert_eq!(
            kept[Path::new(".state.json")],
            rebuilt[Path::new(".state.json")]
        );
    }

    #[test]
    fn a_line_read_twice_shows_once_and_a_half_written_line_waits() {
        let f = fixture();
        f.append(1);
        f.append(1);
        let mut partial = fs::OpenOptions::new()
            .append(true)
            .open(f.outbox.jobs_log())
            .unwrap();
        std::io::Write::write_all(&mut partial, &record(2).as_bytes()[..20]).unwrap();
        assert_eq!(f.gallery.update(&|| false).unwrap().total, 1);
        std::io::Write::write_all(&mut partial, format!("{}\n", &record(2)[20..]).as_bytes())
            .unwrap();
        assert_eq!(f.gallery.update(&|| false).unwrap().added, 1);
        let index = f.read("index.html");
        assert_eq!(index.matches("id=\"job-job-1\"").count(), 1);
        assert_eq!(cards(&index), 2);
    }

    #[test]
    fn a_replaced_jobs_jsonl_starts_the_gallery_again_and_moved_results_show_as_missing() {
        let f = fixture();
        f.picture("p/cat 1.png");
        for n in 0..5 {
            f.append(n);
        }
        f.gallery.update(&|| false).unwrap();
        assert!(f.read("index.html").contains("src=\"thumbs/job-1-1.jpg\""));
        fs::write(f.outbox.jobs_log(), format!("{}\n", record(1))).unwrap();
        fs::remove_file(f.outbox.root().join("p/cat 1.png")).unwrap();
        let updated = f.gallery.update(&|| false).unwrap();
        assert_eq!(updated.total, 1);
        let index = f.read("index.html");
        assert_eq!(cards(&index), 1);
        assert!(index.contains("<figure class=\"missing\">"));
    }

    #[test]
    fn asked_to_stop_it_keeps_what_it_did_and_goes_on_next_time() {
        let f = fixture();
        for n in 0..10 {
            f.append(n);
        }
        let calls = std::cell::Cell::new(0);
        let updated = f
            .gallery
            .update(&|| {
                calls.set(calls.get() + 1);
                calls.get() > 4
            })
            .unwrap();
        assert_eq!((updated.added, updated.behind), (4, true));
        assert_eq!(f.gallery.update(&|| false).unwrap().total, 10);
    }
}
