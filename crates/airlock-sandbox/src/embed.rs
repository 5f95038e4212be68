//! Loading libpython into the helper process (warm mode).
//!
//! The warm zygote is the helper process itself with the system's libpython loaded and
//! `Py_BytesMain` called on it, exactly like the `python3` binary does. That way the
//! per-execution isolation code (`isolate.rs`) is Rust that lives in the zygote's own
//! address space: the zygote's Python loop calls it through ctypes by address after
//! every `fork()`, with no separate shared object to ship or find at run time.
#![allow(unsafe_code)] // dlopen of libpython and calls into its C API; every block has a SAFETY note

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;

type PyBytesMain = unsafe extern "C" fn(c_int, *mut *mut c_char) -> c_int;

/// Loads `libpython` (RTLD_GLOBAL, so extension modules find its symbols) and runs
/// `Py_BytesMain(argv)`. Returns the interpreter's exit code.
pub(crate) fn run_python(libpython: &Path, argv: &[CString]) -> Result<i32, String> {
    let path = crate::sys::cpath(libpython).map_err(|e| e.to_string())?;
    // SAFETY: path is NUL-terminated; dlopen has no other preconditions.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        return Err(format!("dlopen {}: {}", libpython.display(), dlerror()));
    }
    // SAFETY: handle is a live dlopen handle; the symbol name is NUL-terminated.
    let sym = unsafe { libc::dlsym(handle, c"Py_BytesMain".as_ptr()) };
    if sym.is_null() {
        return Err(format!("Py_BytesMain not found in {}", libpython.display()));
    }
    // SAFETY: Py_BytesMain has had this exact signature since Python 3.8.
    let main: PyBytesMain = unsafe { std::mem::transmute::<*mut libc::c_void, PyBytesMain>(sym) };
    let mut ptrs: Vec<*mut c_char> = argv.iter().map(|a| a.as_ptr() as *mut c_char).collect();
    ptrs.push(std::ptr::null_mut());
    // SAFETY: argv is a NULL-terminated array of NUL-terminated strings that outlive the
    // call (Python copies them during initialisation).
    Ok(unsafe { main(argv.len() as c_int, ptrs.as_mut_ptr()) })
}

fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a pointer to a NUL-terminated static buffer.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: non-NULL, NUL-terminated per dlerror's contract.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}
