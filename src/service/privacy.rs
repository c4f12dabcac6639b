//! macOS privacy (TCC): a LaunchAgent may not read ~/Desktop, ~/Documents or ~/Downloads
//! unless its program has Full Disk Access. The note that says so, plainly.

use std::path::{Component, Path};

/// The protected folders in the home folder (compared without regard to case, as APFS does).
const PROTECTED: [&str; 3] = ["Desktop", "Documents", "Downloads"];

/// A note for a folder drawdrop must read or write (the inbox, the outbox) when it lies in
/// ~/Desktop, ~/Documents or ~/Downloads; `None` elsewhere. Names this binary as the program
/// to give Full Disk Access. Show it on macOS (`check`) and for a launchd install.
pub(crate) fn privacy_note(inbox: &Path, home: &Path) -> Option<String> {
    let binary = std::env::current_exe().and_then(|exe| exe.canonicalize());
    let binary = binary.as_deref().ok();
    privacy_note_for(inbox, home, binary).or_else(|| {
        // A symlink (or a symlinked home) may lead into a protected folder after all.
        let real_inbox = inbox.canonicalize().ok()?;
        let real_home = home.canonicalize().ok()?;
        privacy_note_for(&real_inbox, &real_home, binary)
    })
}

/// [`privacy_note`] with the binary given (`None`: "the drawdrop binary").
pub(crate) fn privacy_note_for(
    folder: &Path,
    home: &Path,
    binary: Option<&Path>,
) -> Option<String> {
    let protected = protected_folder(folder, home)?;
    let program = binary.map_or_else(
        || "the drawdrop binary".to_owned(),
        |binary| binary.display().to_string(),
    );
    Some(format!(
        "{} is in ~/{protected}: macOS only lets a LaunchAgent read ~/Desktop, ~/Documents \
         and ~/Downloads when drawdrop has Full Disk Access. Open System Settings > Privacy & \
         Security > Full Disk Access, click +, add {program} (Cmd-Shift-G lets you type the \
         path), then restart the service with `drawdrop service install`. Or use a folder \
         outside them, such as ~/DrawDrop.",
        folder.display()
    ))
}

/// Which protected folder `folder` is (or is in), if any.
fn protected_folder(folder: &Path, home: &Path) -> Option<&'static str> {
    let below = folder.strip_prefix(home).ok()?;
    let first = match below.components().next()? {
        Component::Normal(name) => name.to_str()?,
        _ => return None,
    };
    PROTECTED
        .into_iter()
        .find(|protected| protected.eq_ignore_ascii_case(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "/Users/ann";

    #[test]
    fn folders_in_desktop_documents_or_downloads_need_full_disk_access() {
        for folder in [
            "/Users/ann/Desktop",
            "/Users/ann/Desktop/DrawDrop/Inbox",
            "/Users/ann/Documents/Art in",
            "/Users/ann/downloads/x",
        ] {
            let note = privacy_note_for(
                Path::new(folder),
                Path::new(HOME),
                Some(Path::new("/Users/ann/.cargo/bin/drawdrop")),
            )
            .unwrap_or_else(|| panic!("no note for {folder}"));
            assert!(note.starts_with(folder), "{note}");
            assert!(note.contains("Full Disk Access"), "{note}");
            assert!(
                note.contains("System Settings > Privacy & Security > Full Disk Access"),
                "{note}"
            );
            assert!(
                note.contains("add /Users/ann/.cargo/bin/drawdrop"),
                "{note}"
            );
        }
    }

    #[test]
    fn other_folders_need_nothing() {
        for folder in [
            "/Users/ann/DrawDrop/Inbox",
            "/Users/ann/Pictures/Desktop",
            "/Users/ann/DesktopStuff",
            "/Users/bob/Desktop",
            "/Users/ann",
            "/Volumes/Art/Desktop",
        ] {
            assert_eq!(
                privacy_note_for(Path::new(folder), Path::new(HOME), None),
                None,
                "{folder}"
            );
        }
    }

    #[test]
    fn without_a_binary_the_note_still_says_what_to_add() {
        let note =
            privacy_note_for(Path::new("/Users/ann/Documents/in"), Path::new(HOME), None).unwrap();
        assert!(note.contains("add the drawdrop binary"), "{note}");
    }

    #[test]
    fn a_symlink_into_a_protected_folder_is_noticed() {
        let temp = tempfile::tempdir().unwrap();
        let home = temp.path().canonicalize().unwrap();
        let real = home.join("Documents/in");
        std::fs::create_dir_all(&real).unwrap();
        let link = home.join("DrawDrop");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&real, &link).unwrap();
        #[cfg(unix)]
        assert!(privacy_note(&link, &home).is_some());
        assert!(privacy_note(&real, &home).is_some());
        assert_eq!(privacy_note(&home.join("Pictures"), &home), None);
    }
}
