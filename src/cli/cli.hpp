// The `lrts` command line. Thin: each subcommand (commands.hpp) parses its flags and calls into
// the components.
#pragma once

namespace lrts::cli {

// The whole `lrts` program (main forwards here).
int main(int argc, char** argv);

}  // namespace lrts::cli
