//! File risk: what a file really is, and whether it may be sent or opened.
//!
//! Runs on the sender before upload and on the recipient after download,
//! on the file's name, its first bytes (at least 4 KiB, or the whole file),
//! its size and, when known, the SHA-256 of its plaintext:
//!
//! * what the file really is, from its magic bytes ([`sniff`]), against
//!   what its name says (`invoice.pdf` that starts with `MZ`);
//! * programs, scripts, disk images and macro documents, by content and by
//!   extension; programs inside a ZIP (names read from the headers in the
//!   first bytes);
//! * names that lie: a double extension (`report.pdf.exe`,
//!   `photo.jpg   .scr`) or bidi controls (`photo\u{202E}gpj.exe`);
//! * the EICAR test file (strict definition), and the EICAR string inside
//!   another file;
//! * the organisation's blocklist of SHA-256 hashes.
//!
//! What it does not do: scan for malware, unpack archives beyond the
//! headers in the bytes it is given, or look inside encrypted or compressed
//! content. Macros in an OOXML or OLE file are seen only when their marker
//! (`vbaProject.bin`, `_VBA_PROJECT`) is within the bytes given; pass the
//! whole file when it is small. No warning means "nothing known against it".
//!
//! ```
//! use rampart_policy::file::{analyze, FileAction, FileFacts, FileRules};
//!
//! let mut head = b"MZ".to_vec();
//! head.resize(512, 0);
//! let facts = FileFacts { name: "invoice.pdf", head: &head, size: 70_000, sha256: None };
//! let warnings = analyze(&facts, &FileRules::default());
//! let ids: Vec<&str> = warnings.iter().map(|w| w.risk.id()).collect();
//! assert_eq!(ids, ["file.executable", "file.mismatched_type"]);
//! assert_eq!(
//!     warnings[1].explanation,
//!     "'invoice.pdf' is really a Windows program (it starts like an .exe), not a .pdf file"
//! );
//! assert!(warnings.iter().all(|w| w.action == FileAction::Warn));
//! ```

use crate::document::find_line;
use crate::error::PolicyError;
use crate::link::{is_bidi_control, is_hidden_char, show};
use memchr::memmem;
use serde::{Deserialize, Serialize};

/// Entries allowed in `blocked_hashes`.
pub const MAX_BLOCKED_HASHES: usize = 100_000;

/// The EICAR test string (the third character is a capital O).
const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// The largest a strict EICAR file may be.
const EICAR_MAX_SIZE: usize = 128;
/// How much of a file name a warning shows.
const MAX_SHOWN_NAME: usize = 80;
/// ZIP entry names read from the first bytes.
const MAX_ZIP_ENTRIES: usize = 1_000;

/// What happens to a file a rule fires on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    /// Nothing: the rule is off.
    Allow,
    /// The user is told and decides.
    Warn,
    /// The file is not sent, or not opened.
    Block,
}

impl FileAction {
    /// `allow`, `warn` or `block`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileAction::Allow => "allow",
            FileAction::Warn => "warn",
            FileAction::Block => "block",
        }
    }
}

/// The organisation's file rules: the `[files]` section of the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileRules {
    /// Programs, installers, shortcuts and disk images. Default: warn.
    pub executable: FileAction,
    /// Scripts (`.ps1`, `.vbs`, `.js`, `.sh`, `#!` files). Default: warn.
    pub script: FileAction,
    /// Office documents with (or that can hold) macros. Default: warn.
    pub macro_document: FileAction,
    /// Content that is not what the extension says. Default: warn.
    pub mismatched_type: FileAction,
    /// `report.pdf.exe`. Default: warn.
    pub double_extension: FileAction,
    /// Bidi controls in the name. Default: block.
    pub rtl_override: FileAction,
    /// The EICAR test file. Default: block (the string inside another
    /// file is at most a warning).
    pub eicar: FileAction,
    /// A ZIP that holds a program or script. Default: warn.
    pub archive_executable: FileAction,
    /// Hex SHA-256 hashes of the plaintext of forbidden files; always block.
    pub blocked_hashes: Vec<String>,
}

impl Default for FileRules {
    fn default() -> Self {
        FileRules {
            executable: FileAction::Warn,
            script: FileAction::Warn,
            macro_document: FileAction::Warn,
            mismatched_type: FileAction::Warn,
            double_extension: FileAction::Warn,
            rtl_override: FileAction::Block,
            eicar: FileAction::Block,
            archive_executable: FileAction::Warn,
            blocked_hashes: Vec::new(),
        }
    }
}

impl FileRules {
    pub(crate) fn validate(&self, source: &str) -> Result<(), PolicyError> {
        if self.blocked_hashes.len() > MAX_BLOCKED_HASHES {
            return Err(PolicyError::Invalid {
                line: find_line(source, "blocked_hashes"),
                message: format!(
                    "files.blocked_hashes has {} entries; the limit is {MAX_BLOCKED_HASHES}",
                    self.blocked_hashes.len()
                ),
            });
        }
        for entry in &self.blocked_hashes {
            if parse_sha256(entry).is_none() {
                let line = if !entry.is_empty() && source.contains(entry.as_str()) {
                    find_line(source, entry)
                } else {
                    find_line(source, "blocked_hashes")
                };
                return Err(PolicyError::Invalid {
                    line,
                    message: format!(
                        "files.blocked_hashes: \"{}\" is not a SHA-256 hash (64 hex digits)",
                        show(entry, 80)
                    ),
                });
            }
        }
        Ok(())
    }
}

fn parse_sha256(entry: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(entry.trim(), &mut out).ok()?;
    Some(out)
}

/// What a file really is, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// `MZ`: a Windows .exe or .dll.
    WindowsProgram,
    /// ELF.
    LinuxProgram,
    /// Mach-O, 32- or 64-bit, either byte order, or universal ("fat").
    MacProgram,
    /// Android Dalvik bytecode (`dex\n035\0`).
    AndroidDex,
    /// `\0asm` version 1.
    WebAssembly,
    /// `CA FE BA BE` with a Java class-file version.
    JavaClass,
    /// A Windows shortcut (`.lnk`).
    WindowsShortcut,
    /// A text file starting with `#!`.
    Script,
    /// A ZIP archive with nothing more specific seen.
    Zip,
    /// A ZIP with `META-INF/MANIFEST.MF`.
    JavaArchive,
    /// A ZIP with `AndroidManifest.xml` or `classes.dex`.
    AndroidPackage,
    /// A ZIP with `[Content_Types].xml`.
    OfficeDocument,
    /// A ZIP with `vbaProject.bin`.
    OfficeMacroDocument,
    /// A ZIP whose `mimetype` is an OpenDocument type.
    OpenDocument,
    /// An OLE compound file: legacy Office, MSI, Outlook .msg.
    LegacyOffice,
    /// An OLE compound file with a `_VBA_PROJECT` stream.
    LegacyOfficeMacro,
    Pdf,
    Rtf,
    Png,
    Jpeg,
    Gif,
    WebP,
    /// ISO base media (`ftyp`): MP4, MOV, HEIC, AVIF.
    IsoMedia,
    Gzip,
    SevenZip,
    Rar,
    /// ISO 9660, VHD or VHDX.
    DiskImage,
}

impl FileKind {
    /// A stable id (`windows_program`, `pdf`, …).
    pub fn id(self) -> &'static str {
        match self {
            FileKind::WindowsProgram => "windows_program",
            FileKind::LinuxProgram => "linux_program",
            FileKind::MacProgram => "mac_program",
            FileKind::AndroidDex => "android_dex",
            FileKind::WebAssembly => "webassembly",
            FileKind::JavaClass => "java_class",
            FileKind::WindowsShortcut => "windows_shortcut",
            FileKind::Script => "script",
            FileKind::Zip => "zip",
            FileKind::JavaArchive => "java_archive",
            FileKind::AndroidPackage => "android_package",
            FileKind::OfficeDocument => "office_document",
            FileKind::OfficeMacroDocument => "office_macro_document",
            FileKind::OpenDocument => "open_document",
            FileKind::LegacyOffice => "legacy_office",
            FileKind::LegacyOfficeMacro => "legacy_office_macro",
            FileKind::Pdf => "pdf",
            FileKind::Rtf => "rtf",
            FileKind::Png => "png",
            FileKind::Jpeg => "jpeg",
            FileKind::Gif => "gif",
            FileKind::WebP => "webp",
            FileKind::IsoMedia => "iso_media",
            FileKind::Gzip => "gzip",
            FileKind::SevenZip => "7z",
            FileKind::Rar => "rar",
            FileKind::DiskImage => "disk_image",
        }
    }

    /// What it is, for people: "a Windows program".
    pub fn description(self) -> &'static str {
        match self {
            FileKind::WindowsProgram => "a Windows program",
            FileKind::LinuxProgram => "a Linux program",
            FileKind::MacProgram => "a Mac program",
            FileKind::AndroidDex => "Android program code",
            FileKind::WebAssembly => "WebAssembly code",
            FileKind::JavaClass => "a Java program",
            FileKind::WindowsShortcut => "a Windows shortcut, which can run commands",
            FileKind::Script => "a script",
            FileKind::Zip => "a ZIP archive",
            FileKind::JavaArchive => "a Java program",
            FileKind::AndroidPackage => "an Android app",
            FileKind::OfficeDocument => "an Office document",
            FileKind::OfficeMacroDocument => "an Office document with macros",
            FileKind::OpenDocument => "an OpenDocument file",
            FileKind::LegacyOffice => "an old-style Office file or Windows installer",
            FileKind::LegacyOfficeMacro => "an old-style Office document with macros",
            FileKind::Pdf => "a PDF document",
            FileKind::Rtf => "an RTF document",
            FileKind::Png => "a PNG image",
            FileKind::Jpeg => "a JPEG image",
            FileKind::Gif => "a GIF image",
            FileKind::WebP => "a WebP image",
            FileKind::IsoMedia => "a video or photo (MP4, MOV or HEIC)",
            FileKind::Gzip => "a gzip archive",
            FileKind::SevenZip => "a 7-Zip archive",
            FileKind::Rar => "a RAR archive",
            FileKind::DiskImage => "a disk image",
        }
    }

    /// What its first bytes look like, for people: "an .exe".
    fn starts_like(self) -> &'static str {
        match self {
            FileKind::WindowsProgram => "an .exe",
            FileKind::LinuxProgram => "a Linux ELF program",
            FileKind::MacProgram => "a Mach-O program",
            FileKind::AndroidDex => "a .dex file",
            FileKind::WebAssembly => "a .wasm module",
            FileKind::JavaClass => "a .class file",
            FileKind::WindowsShortcut => "a .lnk shortcut",
            FileKind::Script => "a script, with '#!'",
            FileKind::Zip => "a .zip",
            FileKind::JavaArchive => "a .jar",
            FileKind::AndroidPackage => "an .apk",
            FileKind::OfficeDocument => "an Office file",
            FileKind::OfficeMacroDocument => "an Office file with macros",
            FileKind::OpenDocument => "an OpenDocument file",
            FileKind::LegacyOffice | FileKind::LegacyOfficeMacro => "an old-style Office file",
            FileKind::Pdf => "a .pdf",
            FileKind::Rtf => "an .rtf",
            FileKind::Png => "a .png",
            FileKind::Jpeg => "a .jpg",
            FileKind::Gif => "a .gif",
            FileKind::WebP => "a .webp",
            FileKind::IsoMedia => "an .mp4",
            FileKind::Gzip => "a .gz",
            FileKind::SevenZip => "a .7z",
            FileKind::Rar => "a .rar",
            FileKind::DiskImage => "a disk image",
        }
    }

    /// Whether opening it runs code (or, for a disk image, can carry
    /// programs past the usual checks).
    pub fn is_program(self) -> bool {
        matches!(
            self,
            FileKind::WindowsProgram
                | FileKind::LinuxProgram
                | FileKind::MacProgram
                | FileKind::AndroidDex
                | FileKind::JavaClass
                | FileKind::WindowsShortcut
                | FileKind::JavaArchive
                | FileKind::AndroidPackage
                | FileKind::DiskImage
        )
    }

    fn has_macros(self) -> bool {
        matches!(
            self,
            FileKind::OfficeMacroDocument | FileKind::LegacyOfficeMacro
        )
    }

    /// Whether a file of this kind may carry the extension `ext`.
    fn fits(self, ext: &str) -> bool {
        let lists: &[&[&str]] = match self {
            FileKind::WindowsProgram => &[&[
                "exe", "dll", "scr", "com", "sys", "cpl", "ocx", "efi", "drv", "mui", "pif", "xll",
                "ax", "node",
            ]],
            FileKind::LinuxProgram => &[&[
                "so", "elf", "o", "ko", "out", "run", "appimage", "bin", "axf", "prx", "node",
            ]],
            FileKind::MacProgram => &[&["dylib", "bundle", "o", "so", "macho", "node"]],
            FileKind::AndroidDex => &[&["dex", "odex"]],
            FileKind::WebAssembly => &[&["wasm"]],
            FileKind::JavaClass => &[&["class"]],
            FileKind::WindowsShortcut => &[&["lnk"]],
            FileKind::Script => &[SHEBANG_EXTS],
            FileKind::Zip => &[ARCHIVE_EXTS, ZIP_CONTAINER_EXTS],
            FileKind::JavaArchive => &[&["jar", "war", "ear", "aar", "zip"]],
            FileKind::AndroidPackage => &[&["apk", "apks", "xapk", "aab", "aar", "jar", "zip"]],
            FileKind::OfficeDocument => &[OOXML_EXTS, MACRO_EXTS],
            FileKind::OfficeMacroDocument => &[MACRO_EXTS],
            FileKind::OpenDocument => &[ODF_EXTS],
            FileKind::LegacyOffice => &[OLE_EXTS],
            FileKind::LegacyOfficeMacro => &[OLE_MACRO_EXTS],
            FileKind::Pdf => &[&["pdf", "ai"]],
            FileKind::Rtf => &[&["rtf"]],
            FileKind::Png | FileKind::Jpeg | FileKind::Gif | FileKind::WebP => &[IMAGE_EXTS],
            FileKind::IsoMedia => &[MEDIA_EXTS],
            FileKind::Gzip | FileKind::SevenZip | FileKind::Rar => &[ARCHIVE_EXTS],
            FileKind::DiskImage => &[DISK_IMAGE_EXTS],
        };
        lists.iter().any(|list| list.contains(&ext))
    }
}

/// What a file really is, from its first bytes; `None` when unknown (plain
/// text, most data formats, or too few bytes). Never panics.
pub fn sniff(head: &[u8]) -> Option<FileKind> {
    let at = |offset: usize, magic: &[u8]| {
        head.get(offset..offset + magic.len())
            .is_some_and(|b| b == magic)
    };
    let starts = |magic: &[u8]| head.starts_with(magic);
    let u32_be = |offset: usize| {
        head.get(offset..offset + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    };

    // A DOS header is 64 bytes; shorter "MZ…" is more likely text.
    if starts(b"MZ") && head.len() >= 64 {
        return Some(FileKind::WindowsProgram);
    }
    if starts(b"\x7fELF") {
        return Some(FileKind::LinuxProgram);
    }
    if [
        b"\xfe\xed\xfa\xce",
        b"\xfe\xed\xfa\xcf",
        b"\xce\xfa\xed\xfe",
        b"\xcf\xfa\xed\xfe",
        b"\xca\xfe\xba\xbf",
        b"\xbf\xba\xfe\xca",
    ]
    .iter()
    .any(|m| starts(*m))
    {
        return Some(FileKind::MacProgram);
    }
    if starts(b"\xca\xfe\xba\xbe") {
        // Shared by Java classes and universal Mach-O: the next word is
        // the class version (minor, major ≥ 45) or the number of
        // architectures (a handful).
        return match u32_be(4) {
            Some(n) if n < 45 => Some(FileKind::MacProgram),
            Some(_) => Some(FileKind::JavaClass),
            None => None,
        };
    }
    if starts(b"dex\n")
        && head
            .get(4..7)
            .is_some_and(|v| v.iter().all(u8::is_ascii_digit))
        && at(7, b"\0")
    {
        return Some(FileKind::AndroidDex);
    }
    if starts(b"\0asm\x01\0\0\0") {
        return Some(FileKind::WebAssembly);
    }
    if starts(b"\x4c\x00\x00\x00\x01\x14\x02\x00") {
        return Some(FileKind::WindowsShortcut);
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        return Some(zip_kind(head));
    }
    if starts(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") {
        let vba = utf16le(b"_VBA_PROJECT");
        return Some(if memmem::find(head, &vba).is_some() {
            FileKind::LegacyOfficeMacro
        } else {
            FileKind::LegacyOffice
        });
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some(FileKind::Png);
    }
    if starts(b"\xff\xd8\xff") {
        return Some(FileKind::Jpeg);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some(FileKind::Gif);
    }
    if starts(b"RIFF") && at(8, b"WEBP") {
        return Some(FileKind::WebP);
    }
    if at(4, b"ftyp") {
        return Some(FileKind::IsoMedia);
    }
    if starts(b"{\\rtf") {
        return Some(FileKind::Rtf);
    }
    if starts(b"\x1f\x8b\x08") {
        return Some(FileKind::Gzip);
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return Some(FileKind::SevenZip);
    }
    if starts(b"Rar!\x1a\x07") {
        return Some(FileKind::Rar);
    }
    if starts(b"vhdxfile") || starts(b"conectix") || at(0x8001, b"CD001") {
        return Some(FileKind::DiskImage);
    }
    let bom_less = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    if bom_less.starts_with(b"#!") {
        return Some(FileKind::Script);
    }
    // PDF readers accept the header anywhere in the first kilobyte.
    if memmem::find(head.get(..1024).unwrap_or(head), b"%PDF-").is_some() {
        return Some(FileKind::Pdf);
    }
    None
}

/// What a ZIP is, from the entry names in its first bytes.
fn zip_kind(head: &[u8]) -> FileKind {
    let has = |name: &[u8]| memmem::find(head, name).is_some();
    if has(b"AndroidManifest.xml") || has(b"classes.dex") {
        FileKind::AndroidPackage
    } else if has(b"vbaProject.bin") {
        FileKind::OfficeMacroDocument
    } else if has(b"[Content_Types].xml") {
        FileKind::OfficeDocument
    } else if has(b"META-INF/MANIFEST.MF") {
        FileKind::JavaArchive
    } else if has(b"mimetypeapplication/vnd.oasis.opendocument") {
        FileKind::OpenDocument
    } else {
        FileKind::Zip
    }
}

fn utf16le(ascii: &[u8]) -> Vec<u8> {
    ascii.iter().flat_map(|&b| [b, 0]).collect()
}

/// The entry names of a ZIP found in its first bytes: local file headers
/// and, if the bytes reach it, the central directory.
fn zip_entry_names(head: &[u8]) -> Vec<&[u8]> {
    let u16_le = |offset: usize| {
        head.get(offset..offset + 2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(|b| usize::from(u16::from_le_bytes(b)))
    };
    let mut names = Vec::new();
    // (signature, offset of the name length, offset of the name)
    for (signature, len_at, name_at) in [(b"PK\x03\x04", 26, 30), (b"PK\x01\x02", 28, 46)] {
        for start in memmem::find_iter(head, signature) {
            if names.len() == MAX_ZIP_ENTRIES {
                return names;
            }
            let name = u16_le(start + len_at)
                .and_then(|len| head.get(start + name_at..start + name_at + len));
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                names.push(name);
            }
        }
    }
    names
}

/// What is known about a file. Its `Debug` shows sizes only: names and
/// content are the user's.
#[derive(Clone, Copy)]
pub struct FileFacts<'a> {
    /// The name as the sender gave it.
    pub name: &'a str,
    /// The first bytes: at least 4 KiB, or the whole file if smaller.
    pub head: &'a [u8],
    /// The size of the whole file.
    pub size: u64,
    /// The SHA-256 of the whole plaintext, when computed.
    pub sha256: Option<[u8; 32]>,
}

impl std::fmt::Debug for FileFacts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileFacts")
            .field("name_chars", &self.name.chars().count())
            .field("head_bytes", &self.head.len())
            .field("size", &self.size)
            .field("sha256", &self.sha256.map(|_| "<present>"))
            .finish()
    }
}

/// Why a file was flagged. The ids are stable: clients report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileRisk {
    /// A program, installer, shortcut or disk image.
    Executable,
    /// A script.
    Script,
    /// An Office document with, or able to hold, macros.
    MacroDocument,
    /// The content is not what the extension says.
    MismatchedType,
    /// A harmless-looking extension before a dangerous one.
    DoubleExtension,
    /// Bidi controls in the name.
    RtlOverride,
    /// The EICAR test file.
    Eicar,
    /// The EICAR test string inside another file.
    EicarString,
    /// A ZIP holding a program or script.
    ArchiveExecutable,
    /// On the organisation's blocklist.
    Blocklisted,
}

impl FileRisk {
    /// The stable id (`file.executable`, …).
    pub fn id(self) -> &'static str {
        match self {
            FileRisk::Executable => "file.executable",
            FileRisk::Script => "file.script",
            FileRisk::MacroDocument => "file.macro_document",
            FileRisk::MismatchedType => "file.mismatched_type",
            FileRisk::DoubleExtension => "file.double_extension",
            FileRisk::RtlOverride => "file.rtl_override",
            FileRisk::Eicar => "file.eicar",
            FileRisk::EicarString => "file.eicar_string",
            FileRisk::ArchiveExecutable => "file.archive_executable",
            FileRisk::Blocklisted => "file.blocklisted",
        }
    }
}

/// One thing to tell about a file, and what the policy says to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileWarning {
    pub risk: FileRisk,
    /// `Warn` or `Block` (rules set to `Allow` give no warning).
    pub action: FileAction,
    /// One sentence for a non-expert; the name with hidden characters
    /// shown as `<U+202E>`.
    pub explanation: String,
}

/// File rules compiled once: the hash blocklist sorted for binary search.
pub struct FileChecker {
    rules: FileRules,
    blocked: Vec<[u8; 32]>,
}

impl std::fmt::Debug for FileChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileChecker")
            .field("blocked_hashes", &self.blocked.len())
            .finish_non_exhaustive()
    }
}

impl FileChecker {
    /// Compiles file rules; hashes that do not parse are skipped.
    pub fn new(rules: &FileRules) -> FileChecker {
        let mut blocked: Vec<[u8; 32]> = rules
            .blocked_hashes
            .iter()
            .take(MAX_BLOCKED_HASHES)
            .filter_map(|h| parse_sha256(h))
            .collect();
        blocked.sort_unstable();
        blocked.dedup();
        FileChecker {
            rules: FileRules {
                blocked_hashes: Vec::new(),
                ..rules.clone()
            },
            blocked,
        }
    }

    /// The warnings for one file, blocking ones first.
    pub fn check(&self, facts: &FileFacts<'_>) -> Vec<FileWarning> {
        let rules = &self.rules;
        let mut out: Vec<FileWarning> = Vec::new();
        let mut warn = |risk: FileRisk, action: FileAction, explanation: String| {
            if action != FileAction::Allow && !out.iter().any(|w| w.risk == risk) {
                out.push(FileWarning {
                    risk,
                    action,
                    explanation,
                });
            }
        };
        let name = format!("'{}'", show(facts.name, MAX_SHOWN_NAME));
        let ext = extension(facts.name);
        let ext = ext.as_deref();
        let kind = sniff(facts.head);

        if let Some(hash) = facts.sha256
            && self.blocked.binary_search(&hash).is_ok()
        {
            warn(
                FileRisk::Blocklisted,
                FileAction::Block,
                format!("{name} is a file your organisation has blocked"),
            );
        }

        match eicar(facts) {
            Some(Eicar::Strict) => warn(
                FileRisk::Eicar,
                rules.eicar,
                format!(
                    "{name} is the EICAR anti-virus test file: harmless, but handled like a virus to test defences"
                ),
            ),
            Some(Eicar::Contained) => warn(
                FileRisk::EicarString,
                rules.eicar.min(FileAction::Warn),
                format!(
                    "{name} contains the EICAR anti-virus test text, which virus scanners treat like a virus"
                ),
            ),
            None => {}
        }

        if facts.name.chars().any(is_bidi_control) {
            let ending = ext.map_or(String::new(), |e| format!("; it really ends in .{e}"));
            let explanation = match reversed_view(facts.name) {
                Some(looks) => format!(
                    "the name uses a hidden character that reverses text, so {name} looks like '{}'{ending}",
                    show(&looks, MAX_SHOWN_NAME)
                ),
                None => format!(
                    "the name {name} uses hidden characters that change the direction of text, so it may not end the way it looks{ending}"
                ),
            };
            warn(FileRisk::RtlOverride, rules.rtl_override, explanation);
        }

        let ext_program = ext.and_then(program_extension);
        match (kind, ext_program) {
            (_, Some((what, consequence))) => warn(
                FileRisk::Executable,
                rules.executable,
                format!("{name} is {what}: {consequence}"),
            ),
            (Some(k), None) if k.is_program() => warn(
                FileRisk::Executable,
                rules.executable,
                format!(
                    "{name} contains {}, which can run code on your device when opened",
                    k.description()
                ),
            ),
            _ => {}
        }

        if ext.is_some_and(|e| SCRIPT_EXTS.contains(&e)) {
            warn(
                FileRisk::Script,
                rules.script,
                format!("{name} is a script: opening it can run commands on your device"),
            );
        } else if kind == Some(FileKind::Script) {
            warn(
                FileRisk::Script,
                rules.script,
                format!("{name} is a script (it starts with '#!'), which can run commands"),
            );
        }

        if kind.is_some_and(FileKind::has_macros) {
            warn(
                FileRisk::MacroDocument,
                rules.macro_document,
                format!("{name} contains Office macros, which run code if you enable them"),
            );
        } else if ext.is_some_and(|e| MACRO_EXTS.contains(&e)) {
            warn(
                FileRisk::MacroDocument,
                rules.macro_document,
                format!(
                    "{name} is an Office document that can contain macros, which run code if you enable them"
                ),
            );
        }

        if let (Some(k), Some(e)) = (kind, ext)
            && is_known_extension(e)
            && !k.fits(e)
        {
            warn(
                FileRisk::MismatchedType,
                rules.mismatched_type,
                format!(
                    "{name} is really {} (it starts like {}), not a .{e} file",
                    k.description(),
                    k.starts_like()
                ),
            );
        }

        if let Some((decoy, real)) = double_extension(facts.name) {
            warn(
                FileRisk::DoubleExtension,
                rules.double_extension,
                format!("{name} is named to look like a .{decoy} file, but it ends in .{real}"),
            );
        }

        if kind == Some(FileKind::Zip)
            && let Some(inner) = zip_entry_names(facts.head)
                .into_iter()
                .map(String::from_utf8_lossy)
                .find(|n| extension(n).is_some_and(|e| is_dangerous_extension(&e)))
        {
            warn(
                FileRisk::ArchiveExecutable,
                rules.archive_executable,
                format!(
                    "{name} is an archive that holds a program or script ('{}')",
                    show(&inner, MAX_SHOWN_NAME)
                ),
            );
        }

        out.sort_by_key(|w| std::cmp::Reverse(w.action));
        out
    }
}

/// Checks one file against `rules`. Compiles the rules on every call: for
/// more than one file, build a [`FileChecker`] once.
pub fn analyze(facts: &FileFacts<'_>, rules: &FileRules) -> Vec<FileWarning> {
    FileChecker::new(rules).check(facts)
}

enum Eicar {
    /// The file is the test file: the 68 characters, then only whitespace
    /// or Ctrl-Z, 128 bytes at most.
    Strict,
    /// The string appears in the bytes given.
    Contained,
}

fn eicar(facts: &FileFacts<'_>) -> Option<Eicar> {
    let size = usize::try_from(facts.size).unwrap_or(usize::MAX);
    if size <= EICAR_MAX_SIZE
        && let Some(file) = facts.head.get(..size)
        && let Some(rest) = file.strip_prefix(EICAR)
        && rest
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x1a))
    {
        return Some(Eicar::Strict);
    }
    memmem::find(facts.head, EICAR).map(|_| Eicar::Contained)
}

/// The extension as the operating system sees it: lowercase, after the
/// last dot of the last path component, trailing dots and spaces dropped
/// (as Windows does), hidden characters ignored. `None` for names without
/// one, dot-files (`.bashrc`) and implausible extensions.
fn extension(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let base = base.trim_end_matches(|c: char| c == '.' || c.is_whitespace() || is_hidden_char(c));
    let (stem, ext) = base.rsplit_once('.')?;
    if stem.chars().all(|c| c.is_whitespace() || is_hidden_char(c)) {
        return None;
    }
    let ext: String = ext
        .chars()
        .filter(|c| !is_hidden_char(*c))
        .flat_map(char::to_lowercase)
        .collect();
    let plausible = !ext.is_empty()
        && ext.len() <= 24
        && ext
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    plausible.then_some(ext)
}

/// A harmless-looking extension right before a dangerous final one,
/// padding ignored: `report.pdf.exe`, `photo.jpg   .scr`.
fn double_extension(name: &str) -> Option<(String, String)> {
    let real = extension(name)?;
    if !is_dangerous_extension(&real) {
        return None;
    }
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let base = base.trim_end_matches(|c: char| c == '.' || c.is_whitespace() || is_hidden_char(c));
    let (stem, _) = base.rsplit_once('.')?;
    let stem = stem.trim_end_matches(|c: char| {
        c.is_whitespace() || is_hidden_char(c) || c == '_' || c == '\u{2800}'
    });
    let decoy = extension(stem)?;
    DECOY_EXTS
        .contains(&decoy.as_str())
        .then_some((decoy, real))
}

/// How the name looks when a right-to-left override (U+202E) reverses
/// what follows it, up to a pop (U+202C); other controls dropped.
fn reversed_view(name: &str) -> Option<String> {
    let at = name.find('\u{202E}')?;
    let before = name.get(..at)?;
    let after = name.get(at + '\u{202E}'.len_utf8()..)?;
    let (reversed, rest) = match after.find('\u{202C}') {
        Some(i) => (after.get(..i)?, after.get(i + '\u{202C}'.len_utf8()..)?),
        None => (after, ""),
    };
    let visible = |s: &str| {
        s.chars()
            .filter(|c| !is_hidden_char(*c))
            .collect::<String>()
    };
    Some(format!(
        "{}{}{}",
        visible(before),
        visible(reversed).chars().rev().collect::<String>(),
        visible(rest)
    ))
}

/// What a dangerous program extension is, and what opening it does.
fn program_extension(ext: &str) -> Option<(&'static str, &'static str)> {
    if !EXECUTABLE_EXTS.contains(&ext) {
        return None;
    }
    const RUNS: &str = "opening it runs it on your device";
    Some(match ext {
        "iso" | "img" | "vhd" | "vhdx" | "udf" => (
            "a disk image",
            "opening it can run the programs inside without the usual warnings",
        ),
        "dmg" | "pkg" | "mpkg" => ("a Mac installer", RUNS),
        "lnk" | "url" | "scf" | "website" | "settingcontent-ms" | "library-ms" => {
            ("a shortcut", "opening it can run commands on your device")
        }
        "apk" | "apks" | "xapk" | "aab" => {
            ("an Android app", "installing it runs it on your device")
        }
        "ipa" => ("an iPhone app", "installing it runs it on your device"),
        "jar" => ("a Java program", RUNS),
        "msi" | "msp" | "mst" | "msix" | "msixbundle" | "appx" | "appxbundle" | "appinstaller"
        | "application" | "appref-ms" => ("a Windows installer", RUNS),
        "deb" | "rpm" | "appimage" | "run" => ("a Linux program or installer", RUNS),
        "reg" => (
            "a Windows registry file",
            "opening it changes system settings",
        ),
        "chm" => (
            "a compiled help file",
            "opening it can run code on your device",
        ),
        _ => ("a program", RUNS),
    })
}

fn is_dangerous_extension(ext: &str) -> bool {
    EXECUTABLE_EXTS.contains(&ext) || SCRIPT_EXTS.contains(&ext) || MACRO_EXTS.contains(&ext)
}

/// Extensions that say what a file is, so content that is something else
/// is a mismatch. Unknown extensions (`.dat`) say nothing.
fn is_known_extension(ext: &str) -> bool {
    [
        EXECUTABLE_EXTS,
        SCRIPT_EXTS,
        MACRO_EXTS,
        OOXML_EXTS,
        ODF_EXTS,
        OLE_EXTS,
        IMAGE_EXTS,
        MEDIA_EXTS,
        ARCHIVE_EXTS,
        DISK_IMAGE_EXTS,
        TEXT_EXTS,
        &["pdf", "rtf", "class", "dex", "wasm", "dll", "so", "dylib"],
    ]
    .iter()
    .any(|list| list.contains(&ext))
}

// ---------------------------------------------------------------------------
// Extension lists.

/// Programs, installers, shortcuts and disk images.
const EXECUTABLE_EXTS: &[&str] = &[
    "exe",
    "scr",
    "com",
    "pif",
    "cpl",
    "dll",
    "ocx",
    "sys",
    "drv",
    "efi",
    "xll",
    "msi",
    "msp",
    "mst",
    "msix",
    "msixbundle",
    "appx",
    "appxbundle",
    "appinstaller",
    "application",
    "appref-ms",
    "gadget",
    "lnk",
    "url",
    "scf",
    "website",
    "settingcontent-ms",
    "library-ms",
    "msc",
    "diagcab",
    "reg",
    "inf",
    "chm",
    "jar",
    "apk",
    "apks",
    "xapk",
    "aab",
    "ipa",
    "app",
    "dmg",
    "pkg",
    "mpkg",
    "deb",
    "rpm",
    "appimage",
    "run",
    "iso",
    "img",
    "vhd",
    "vhdx",
    "udf",
];

/// Scripts that run when opened, or with one command.
const SCRIPT_EXTS: &[&str] = &[
    "bat",
    "cmd",
    "ps1",
    "psm1",
    "psd1",
    "ps1xml",
    "psc1",
    "vbs",
    "vbe",
    "js",
    "jse",
    "wsf",
    "wsh",
    "wsc",
    "hta",
    "sct",
    "sh",
    "bash",
    "zsh",
    "ksh",
    "csh",
    "command",
    "applescript",
    "scpt",
    "scptd",
    "workflow",
    "action",
];

/// Office documents that hold macros.
const MACRO_EXTS: &[&str] = &[
    "docm", "dotm", "xlsm", "xltm", "xlam", "xla", "xlsb", "pptm", "potm", "ppam", "ppsm", "sldm",
];

/// Office Open XML without macros.
const OOXML_EXTS: &[&str] = &[
    "docx", "dotx", "xlsx", "xltx", "pptx", "potx", "ppsx", "sldx", "vsdx", "thmx",
];

const ODF_EXTS: &[&str] = &[
    "odt", "ods", "odp", "odg", "odf", "odc", "odb", "ott", "ots", "otp", "otg",
];

/// OLE compound files.
const OLE_EXTS: &[&str] = &[
    "doc", "dot", "xls", "xlt", "xla", "ppt", "pot", "pps", "ppa", "msi", "msp", "mst", "msg",
    "vsd", "mpp", "pub", "wps", "db",
];

/// OLE files that may legitimately hold macros.
const OLE_MACRO_EXTS: &[&str] = &[
    "doc", "dot", "xls", "xlt", "xla", "ppt", "pot", "pps", "ppa",
];

/// Other ZIP-based formats.
const ZIP_CONTAINER_EXTS: &[&str] = &[
    "docx",
    "dotx",
    "xlsx",
    "xltx",
    "pptx",
    "potx",
    "ppsx",
    "vsdx",
    "docm",
    "dotm",
    "xlsm",
    "xltm",
    "xlam",
    "xlsb",
    "pptm",
    "potm",
    "ppam",
    "ppsm",
    "odt",
    "ods",
    "odp",
    "odg",
    "epub",
    "jar",
    "war",
    "ear",
    "aar",
    "apk",
    "xapk",
    "aab",
    "ipa",
    "xpi",
    "crx",
    "vsix",
    "nupkg",
    "whl",
    "kmz",
    "3mf",
    "cbz",
    "appx",
    "msix",
    "msixbundle",
    "appxbundle",
    "xps",
    "oxps",
    "pages",
    "numbers",
    "key",
    "sketch",
    "usdz",
    "ora",
];

const ARCHIVE_EXTS: &[&str] = &[
    "zip", "gz", "tgz", "gzip", "7z", "rar", "tar", "cbr", "cb7", "cbz", "zipx",
];

const IMAGE_EXTS: &[&str] = &[
    "png", "apng", "jpg", "jpeg", "jpe", "jfif", "pjpeg", "pjp", "gif", "webp", "bmp", "ico",
    "tif", "tiff",
];

const MEDIA_EXTS: &[&str] = &[
    "mp4", "m4a", "m4v", "m4b", "m4p", "mov", "qt", "3gp", "3g2", "heic", "heif", "avif", "f4v",
];

const DISK_IMAGE_EXTS: &[&str] = &["iso", "img", "vhd", "vhdx", "udf"];

/// Files a `#!` line fits.
const SHEBANG_EXTS: &[&str] = &[
    "sh", "bash", "zsh", "ksh", "csh", "fish", "command", "py", "pyw", "pl", "pm", "rb", "php",
    "js", "mjs", "cjs", "ts", "tcl", "lua", "awk", "r", "ps1",
];

const TEXT_EXTS: &[&str] = &[
    "txt", "csv", "tsv", "md", "json", "xml", "html", "htm", "log", "ini", "yaml", "yml", "svg",
    "eml", "ics", "vcf", "mp3", "wav", "ogg", "flac", "avi", "mkv", "webm",
];

/// Extensions a double-extension trick hides behind.
const DECOY_EXTS: &[&str] = &[
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "rtf", "txt", "csv",
    "jpg", "jpeg", "png", "gif", "bmp", "webp", "heic", "tif", "tiff", "mp3", "mp4", "mov", "avi",
    "wav", "zip", "rar", "7z", "html", "htm", "eml", "msg",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Policy;
    use sha2::{Digest as _, Sha256};

    fn pe() -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c] = 0x80;
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        b
    }

    fn with_magic(magic: &[u8], len: usize) -> Vec<u8> {
        let mut b = magic.to_vec();
        b.resize(len.max(magic.len()), 0);
        b
    }

    /// A ZIP's local file headers (empty entries, stored).
    fn zip_with(names: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        for name in names {
            b.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
            b.extend_from_slice(&[0; 12]);
            b.extend_from_slice(&u16::try_from(name.len()).unwrap().to_le_bytes());
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(name.as_bytes());
        }
        b
    }

    fn eicar_file(suffix: &[u8]) -> Vec<u8> {
        let mut b = EICAR.to_vec();
        b.extend_from_slice(suffix);
        b
    }

    fn check_with(name: &str, head: &[u8], rules: &FileRules) -> Vec<FileWarning> {
        let facts = FileFacts {
            name,
            head,
            size: head.len() as u64,
            sha256: Some(Sha256::digest(head).into()),
        };
        let warnings = analyze(&facts, rules);
        for w in &warnings {
            assert!(
                !w.explanation.chars().any(is_hidden_char),
                "hidden character in {:?}",
                w.explanation
            );
            assert_ne!(w.action, FileAction::Allow);
        }
        warnings
    }

    fn check(name: &str, head: &[u8]) -> Vec<FileWarning> {
        check_with(name, head, &FileRules::default())
    }

    fn ids(name: &str, head: &[u8]) -> Vec<&'static str> {
        check(name, head).iter().map(|w| w.risk.id()).collect()
    }

    #[test]
    fn eicar_string_is_68_characters() {
        assert_eq!(EICAR.len(), 68);
        assert_eq!(EICAR[2], b'O');
    }

    #[test]
    fn windows_program_named_as_pdf() {
        let warnings = check("invoice.pdf", &pe());
        let found: Vec<_> = warnings.iter().map(|w| w.risk.id()).collect();
        assert_eq!(found, ["file.executable", "file.mismatched_type"]);
        assert_eq!(
            warnings[0].explanation,
            "'invoice.pdf' contains a Windows program, which can run code on your device when opened"
        );
        assert_eq!(
            warnings[1].explanation,
            "'invoice.pdf' is really a Windows program (it starts like an .exe), not a .pdf file"
        );
        // The same program under its own name is a program, not a mismatch.
        let warnings = check("setup.exe", &pe());
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].risk, FileRisk::Executable);
        assert_eq!(
            warnings[0].explanation,
            "'setup.exe' is a program: opening it runs it on your device"
        );
        // Under an extension that says nothing, still a program.
        assert_eq!(ids("data.dat", &pe()), ["file.executable"]);
        assert_eq!(ids("README", &pe()), ["file.executable"]);
    }

    #[test]
    fn elf_and_mach_o() {
        let elf = with_magic(b"\x7fELF\x02\x01\x01", 64);
        assert_eq!(sniff(&elf), Some(FileKind::LinuxProgram));
        assert_eq!(
            ids("holiday.jpg", &elf),
            ["file.executable", "file.mismatched_type"]
        );
        assert_eq!(ids("libfoo.so", &elf), ["file.executable"]);
        for magic in [
            &b"\xfe\xed\xfa\xce"[..],
            b"\xfe\xed\xfa\xcf",
            b"\xce\xfa\xed\xfe",
            b"\xcf\xfa\xed\xfe",
            b"\xca\xfe\xba\xbf",
        ] {
            assert_eq!(
                sniff(&with_magic(magic, 32)),
                Some(FileKind::MacProgram),
                "{magic:x?}"
            );
        }
    }

    #[test]
    fn java_class_and_fat_mach_o_share_cafebabe() {
        // Universal binary with two architectures.
        assert_eq!(
            sniff(b"\xca\xfe\xba\xbe\x00\x00\x00\x02\x01\x00\x00\x07"),
            Some(FileKind::MacProgram)
        );
        // Java class file, version 52.0 (Java 8) and a preview minor.
        assert_eq!(
            sniff(b"\xca\xfe\xba\xbe\x00\x00\x00\x34\x00\x1d"),
            Some(FileKind::JavaClass)
        );
        assert_eq!(
            sniff(b"\xca\xfe\xba\xbe\xff\xff\x00\x41"),
            Some(FileKind::JavaClass)
        );
        assert_eq!(sniff(b"\xca\xfe\xba\xbe"), None);
    }

    #[test]
    fn magic_bytes() {
        let ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1";
        let mut ole_vba = with_magic(ole, 512);
        ole_vba.extend_from_slice(&utf16le(b"_VBA_PROJECT_CUR"));
        let mut iso = vec![0u8; 0x8006];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        for (head, kind) in [
            (with_magic(b"dex\n035\0", 112), FileKind::AndroidDex),
            (with_magic(b"\0asm\x01\0\0\0", 8), FileKind::WebAssembly),
            (
                with_magic(b"\x4c\x00\x00\x00\x01\x14\x02\x00", 76),
                FileKind::WindowsShortcut,
            ),
            (b"#!/bin/sh\necho hi\n".to_vec(), FileKind::Script),
            (
                b"\xef\xbb\xbf#!/usr/bin/env python3\n".to_vec(),
                FileKind::Script,
            ),
            (with_magic(ole, 512), FileKind::LegacyOffice),
            (ole_vba, FileKind::LegacyOfficeMacro),
            (b"%PDF-1.7\n".to_vec(), FileKind::Pdf),
            (b"\n\n%PDF-1.4\n".to_vec(), FileKind::Pdf),
            (with_magic(b"\x89PNG\r\n\x1a\n", 16), FileKind::Png),
            (with_magic(b"\xff\xd8\xff\xe0", 16), FileKind::Jpeg),
            (b"GIF89a\x01\x00".to_vec(), FileKind::Gif),
            (b"RIFF\x24\x00\x00\x00WEBPVP8 ".to_vec(), FileKind::WebP),
            (b"\x00\x00\x00\x18ftypmp42".to_vec(), FileKind::IsoMedia),
            (b"\x00\x00\x00\x18ftypheic".to_vec(), FileKind::IsoMedia),
            (b"{\\rtf1\\ansi".to_vec(), FileKind::Rtf),
            (with_magic(b"\x1f\x8b\x08\x00", 10), FileKind::Gzip),
            (with_magic(b"7z\xbc\xaf\x27\x1c", 32), FileKind::SevenZip),
            (b"Rar!\x1a\x07\x01\x00".to_vec(), FileKind::Rar),
            (iso, FileKind::DiskImage),
            (with_magic(b"vhdxfile", 64), FileKind::DiskImage),
            (zip_with(&["a.txt"]), FileKind::Zip),
            (b"PK\x05\x06".to_vec(), FileKind::Zip),
            (
                zip_with(&["META-INF/MANIFEST.MF", "a/B.class"]),
                FileKind::JavaArchive,
            ),
            (
                zip_with(&["AndroidManifest.xml", "META-INF/MANIFEST.MF", "classes.dex"]),
                FileKind::AndroidPackage,
            ),
            (
                zip_with(&["[Content_Types].xml", "word/document.xml"]),
                FileKind::OfficeDocument,
            ),
            (
                zip_with(&["[Content_Types].xml", "xl/vbaProject.bin"]),
                FileKind::OfficeMacroDocument,
            ),
        ] {
            assert_eq!(sniff(&head), Some(kind), "{kind:?}");
            assert!(!kind.id().is_empty() && !kind.description().is_empty());
        }
        for head in [
            &b""[..],
            b"M",
            b"MZ",
            b"MZ is short text",
            b"hello world",
            b"\x7fEL",
            b"PK",
            b"\xd0\xcf",
            b"RIFF\x00\x00\x00\x00WAVE",
            b"dex\n03",
            b"#",
        ] {
            assert_eq!(sniff(head), None, "{head:x?}");
        }
    }

    #[test]
    fn macro_documents() {
        let docm = zip_with(&[
            "[Content_Types].xml",
            "_rels/.rels",
            "word/document.xml",
            "word/vbaProject.bin",
        ]);
        let warnings = check("q3.docm", &docm);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert_eq!(warnings[0].risk, FileRisk::MacroDocument);
        assert_eq!(
            warnings[0].explanation,
            "'q3.docm' contains Office macros, which run code if you enable them"
        );
        // Macros inside a file named .docx: macros and a mismatch.
        assert_eq!(
            ids("q3.docx", &docm),
            ["file.macro_document", "file.mismatched_type"]
        );
        // A plain .docx is fine.
        let docx = zip_with(&["[Content_Types].xml", "_rels/.rels", "word/document.xml"]);
        assert_eq!(check("q3.docx", &docx), vec![]);
        // A .xlsm by name alone.
        assert_eq!(ids("budget.xlsm", b""), ["file.macro_document"]);
        // Old-style Word with VBA.
        let mut doc = with_magic(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 512);
        doc.extend_from_slice(&utf16le(b"_VBA_PROJECT"));
        assert_eq!(ids("letter.doc", &doc), ["file.macro_document"]);
        assert_eq!(
            ids(
                "letter.doc",
                &with_magic(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 512)
            ),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn eicar() {
        for suffix in [&b""[..], b"\r\n", b"  \t\x1a", &[b' '; 60]] {
            let warnings = check("eicar.com", &eicar_file(suffix));
            let w = warnings.iter().find(|w| w.risk == FileRisk::Eicar).unwrap();
            assert_eq!(w.action, FileAction::Block);
            assert_eq!(warnings[0].risk, FileRisk::Eicar, "blocking warnings first");
            assert!(!warnings.iter().any(|w| w.risk == FileRisk::EicarString));
        }
        assert_eq!(
            check("test.txt", &eicar_file(b"\n"))[0].explanation,
            "'test.txt' is the EICAR anti-virus test file: harmless, but handled like a virus to test defences"
        );
        // Longer than 128 bytes, other content after, or before.
        let too_long = eicar_file(&[b' '; 61]);
        assert_eq!(too_long.len(), 129);
        let mut before = b"hello ".to_vec();
        before.extend_from_slice(EICAR);
        for head in [too_long, eicar_file(b"x"), before] {
            let warnings = check("notes.txt", &head);
            assert_eq!(warnings.len(), 1, "{warnings:#?}");
            assert_eq!(warnings[0].risk, FileRisk::EicarString);
            assert_eq!(warnings[0].action, FileAction::Warn);
        }
        // Not EICAR: a zero for the O, or a prefix.
        let mut zero = EICAR.to_vec();
        zero[2] = b'0';
        assert_eq!(check("notes.txt", &zero), vec![]);
        assert_eq!(check("notes.txt", &EICAR[..67]), vec![]);
        // The size says there is more than the bytes given: not strict.
        let facts = FileFacts {
            name: "x.txt",
            head: EICAR,
            size: 100,
            sha256: None,
        };
        assert_eq!(
            analyze(&facts, &FileRules::default())[0].risk,
            FileRisk::EicarString
        );
        // Turned off.
        let off = FileRules {
            eicar: FileAction::Allow,
            ..FileRules::default()
        };
        assert_eq!(check_with("eicar.txt", &eicar_file(b""), &off), vec![]);
    }

    #[test]
    fn right_to_left_override_in_the_name() {
        let warnings = check("photo\u{202E}gpj.exe", &pe());
        assert_eq!(warnings[0].risk, FileRisk::RtlOverride);
        assert_eq!(warnings[0].action, FileAction::Block);
        assert_eq!(
            warnings[0].explanation,
            "the name uses a hidden character that reverses text, so 'photo<U+202E>gpj.exe' looks like 'photoexe.jpg'; it really ends in .exe"
        );
        assert!(warnings.iter().any(|w| w.risk == FileRisk::Executable));
        let warnings = check("report\u{202E}cod\u{202C}.txt", b"hi");
        assert_eq!(warnings[0].risk, FileRisk::RtlOverride);
        assert!(
            warnings[0]
                .explanation
                .contains("looks like 'reportdoc.txt'"),
            "{}",
            warnings[0].explanation
        );
        let warnings = check("report\u{2067}.txt", b"hi");
        assert_eq!(warnings[0].risk, FileRisk::RtlOverride);
        assert!(warnings[0].explanation.contains("<U+2067>"));
        assert_eq!(check("résumé.pdf", b"%PDF-1.5"), vec![]);
    }

    #[test]
    fn double_extensions() {
        let warnings = check("report.pdf.exe", &pe());
        let found: Vec<_> = warnings.iter().map(|w| w.risk.id()).collect();
        assert_eq!(found, ["file.executable", "file.double_extension"]);
        assert_eq!(
            warnings[1].explanation,
            "'report.pdf.exe' is named to look like a .pdf file, but it ends in .exe"
        );
        for name in [
            "photo.jpg   .scr",
            "Invoice.PDF.js",
            "scan.jpeg\u{200B}.exe",
            "agenda.docx.lnk",
            "song.mp3.vbs",
            "C:\\Users\\a\\report.pdf.exe",
            "report.pdf.exe.",
            "report.pdf.exe   ",
        ] {
            let warnings = check(name, b"");
            assert!(
                warnings.iter().any(|w| w.risk == FileRisk::DoubleExtension),
                "{name}: {warnings:#?}"
            );
        }
        for name in [
            "archive.tar.gz",
            "my.report.pdf",
            "v1.2.exe",
            "setup.exe",
            ".pdf.exe",
        ] {
            assert!(
                !check(name, b"")
                    .iter()
                    .any(|w| w.risk == FileRisk::DoubleExtension),
                "{name}"
            );
        }
    }

    #[test]
    fn dangerous_extensions_and_scripts() {
        assert_eq!(ids("run.ps1", b"Write-Host hi"), ["file.script"]);
        assert_eq!(ids("build.sh", b"#!/bin/sh\n"), ["file.script"]);
        assert_eq!(
            ids("notes.txt", b"#!/bin/sh\nrm -rf ~\n"),
            ["file.script", "file.mismatched_type"]
        );
        let w = &check("update.iso", b"")[0];
        assert_eq!(w.risk, FileRisk::Executable);
        assert_eq!(
            w.explanation,
            "'update.iso' is a disk image: opening it can run the programs inside without the usual warnings"
        );
        for name in [
            "a.scr", "a.com", "a.pif", "a.msi", "a.jar", "a.apk", "a.dmg", "a.vhdx", "a.reg",
            "a.LNK",
        ] {
            assert_eq!(ids(name, b""), ["file.executable"], "{name}");
        }
        for name in [
            "a.bat",
            "a.cmd",
            "a.vbs",
            "a.vbe",
            "a.js",
            "a.jse",
            "a.wsf",
            "a.hta",
            "a.command",
        ] {
            assert_eq!(ids(name, b""), ["file.script"], "{name}");
        }
        for name in [
            "photo.jpg",
            "report.pdf",
            "a.docx",
            "README",
            ".bashrc",
            "x.dat",
            "",
        ] {
            assert_eq!(ids(name, b""), Vec::<&str>::new(), "{name}");
        }
    }

    #[test]
    fn harmless_renames_are_not_mismatches() {
        let png = with_magic(b"\x89PNG\r\n\x1a\n", 64);
        assert_eq!(check("photo.jpg", &png), vec![]);
        assert_eq!(check("clip.mov", b"\x00\x00\x00\x18ftypqt  "), vec![]);
        assert_eq!(
            check("book.epub", &zip_with(&["mimetype", "OEBPS/a.xhtml"])),
            vec![]
        );
        assert_eq!(check("backup.zip", b"Rar!\x1a\x07\x01\x00"), vec![]);
        // A ZIP passed off as a PDF is a mismatch.
        assert_eq!(
            ids("invoice.pdf", &zip_with(&["a.txt"])),
            ["file.mismatched_type"]
        );
        // A JAR named .zip is a program, but not a mismatch.
        assert_eq!(
            ids("lib.zip", &zip_with(&["META-INF/MANIFEST.MF"])),
            ["file.executable"]
        );
    }

    #[test]
    fn programs_inside_a_zip() {
        let zip = zip_with(&["docs/readme.txt", "docs/invoice.pdf.exe"]);
        let warnings = check("files.zip", &zip);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert_eq!(warnings[0].risk, FileRisk::ArchiveExecutable);
        assert_eq!(
            warnings[0].explanation,
            "'files.zip' is an archive that holds a program or script ('docs/invoice.pdf.exe')"
        );
        assert_eq!(check("files.zip", &zip_with(&["a.txt", "b.png"])), vec![]);
    }

    #[test]
    fn empty_file() {
        assert_eq!(sniff(&[]), None);
        assert_eq!(check("empty.txt", &[]), vec![]);
        let facts = FileFacts {
            name: "",
            head: &[],
            size: 0,
            sha256: None,
        };
        assert_eq!(analyze(&facts, &FileRules::default()), vec![]);
    }

    #[test]
    fn blocked_hashes() {
        let content = b"the quarterly numbers, leaked";
        let rules = FileRules {
            blocked_hashes: vec![
                hex::encode(Sha256::digest(b"something else")),
                hex::encode_upper(Sha256::digest(content)),
            ],
            ..FileRules::default()
        };
        let warnings = check_with("q3.txt", content, &rules);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].risk, FileRisk::Blocklisted);
        assert_eq!(warnings[0].action, FileAction::Block);
        assert_eq!(
            warnings[0].explanation,
            "'q3.txt' is a file your organisation has blocked"
        );
        assert_eq!(check_with("q3.txt", b"other", &rules), vec![]);
        let no_hash = FileFacts {
            name: "q3.txt",
            head: content,
            size: content.len() as u64,
            sha256: None,
        };
        assert_eq!(analyze(&no_hash, &rules), vec![]);
    }

    #[test]
    fn actions_follow_the_rules_and_block_comes_first() {
        let rules = FileRules {
            executable: FileAction::Block,
            mismatched_type: FileAction::Allow,
            ..FileRules::default()
        };
        let warnings = check_with("report.pdf.exe", &pe(), &rules);
        assert_eq!(warnings[0].risk, FileRisk::Executable);
        assert_eq!(warnings[0].action, FileAction::Block);
        assert_eq!(warnings[1].action, FileAction::Warn);
        let warnings = check_with("invoice.pdf", &pe(), &rules);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn sniff_never_panics() {
        let fixtures = [
            pe(),
            with_magic(b"\xca\xfe\xba\xbe\x00\x00\x00\x02", 8),
            zip_with(&["[Content_Types].xml", "word/vbaProject.bin"]),
            eicar_file(b"\r\n"),
            with_magic(b"dex\n035\0", 8),
        ];
        for fixture in &fixtures {
            for len in 0..=fixture.len() {
                let _ = sniff(&fixture[..len]);
                let _ = check("x.pdf.exe", &fixture[..len]);
            }
        }
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let noise: Vec<u8> = (0..1 << 20).map(|_| (next() >> 24) as u8).collect();
        let _ = sniff(&noise);
        let _ = check("noise.bin", &noise);
        for _ in 0..20_000 {
            let start = usize::try_from(next() % (noise.len() as u64)).unwrap();
            let len = usize::try_from(next() % 64).unwrap();
            let head = &noise[start..(start + len).min(noise.len())];
            let _ = sniff(head);
        }
        // Headers that claim names past the end.
        let _ = zip_entry_names(b"PK\x03\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff");
        let _ = check("x.zip", &b"PK\x03\x04".repeat(100_000));
    }

    proptest::proptest! {
        #[test]
        fn analyze_never_panics(name in "\\PC{0,40}", head in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = check(&name, &head);
            let _ = sniff(&head);
        }

        #[test]
        fn analyze_never_panics_on_tricky_names(
            name in "([a-z]{0,4}|\\.|[\u{202A}-\u{202E}\u{2066}-\u{2069}\u{200B}]| |exe|pdf){0,12}"
        ) {
            let _ = check(&name, b"MZ");
        }
    }

    #[test]
    fn policy_section() {
        let policy =
            Policy::parse("version = 1\n[files]\nexecutable = \"block\"\nscript = \"allow\"\n")
                .unwrap();
        assert_eq!(policy.files.executable, FileAction::Block);
        assert_eq!(policy.files.script, FileAction::Allow);
        assert_eq!(policy.files.rtl_override, FileAction::Block);
        assert_eq!(policy.files.macro_document, FileAction::Warn);
        let policy = Policy::parse(r#"{"version":1,"files":{"eicar":"warn"}}"#).unwrap();
        assert_eq!(policy.files.eicar, FileAction::Warn);
        assert!(matches!(
            Policy::parse("version = 1\n[files]\nexecutable = \"maybe\"\n"),
            Err(PolicyError::Syntax { line: 3, .. })
        ));
        assert!(matches!(
            Policy::parse("version = 1\n[files]\nexecutables = \"block\"\n"),
            Err(PolicyError::Syntax { .. })
        ));
    }

    #[test]
    fn policy_validation_names_the_line() {
        let good = hex::encode(Sha256::digest(b"x"));
        let source = format!(
            "version = 1\n\n[files]\nblocked_hashes = [\n  \"{good}\",\n  \"not-a-hash\",\n]\n"
        );
        match Policy::parse(&source) {
            Err(PolicyError::Invalid { line, message }) => {
                assert_eq!(line, 6);
                assert!(message.contains("not-a-hash"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let short = &good[..62];
        let source = format!("version = 1\n[files]\nblocked_hashes = [\"{short}\"]\n");
        assert!(matches!(
            Policy::parse(&source),
            Err(PolicyError::Invalid { line: 3, .. })
        ));
        let many = FileRules {
            blocked_hashes: vec![good; MAX_BLOCKED_HASHES + 1],
            ..FileRules::default()
        };
        assert!(matches!(
            many.validate("version = 1\n[files]\nblocked_hashes = []\n"),
            Err(PolicyError::Invalid { line: 3, .. })
        ));
        assert_eq!(FileRules::default().validate(""), Ok(()));
    }
}
