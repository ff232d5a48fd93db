#include "cli/cli.hpp"

int main(int argc, char** argv) { return lrts::cli::main(argc, argv); }
