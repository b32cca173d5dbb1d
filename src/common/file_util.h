// Files as meshid writes them: whole, atomically, with the mode asked for.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "common/result.h"

namespace meshid {

// Modes for what meshid writes: secrets owner-only, everything else readable.
constexpr unsigned kSecretFileMode = 0600;
constexpr unsigned kPublicFileMode = 0644;

// Reads a whole file; refuses anything larger than max_bytes so a hostile or
// mistaken path (a device, a huge log) cannot exhaust memory.
Result<std::string> readFile(const std::filesystem::path& path, size_t max_bytes);

// Reads standard input the same way, for "-" arguments.
Result<std::string> readStdin(size_t max_bytes);

// Writes temp file (created with `mode` from the start, so a key is never
// world-readable even for a moment), fsyncs, renames over `path`, fsyncs the
// directory. Readers see the old content or the new, never a mix.
Result<void> writeFileAtomic(const std::filesystem::path& path, std::string_view data,
                             unsigned mode);

}  // namespace meshid
