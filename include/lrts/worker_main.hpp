// Entry point for a worker executable with services linked in:
//
//   int main(int argc, char** argv) { return lrts::worker_main(argc, argv); }
//
// accepts the same flags as `lrts worker`. The worker starts its slot processes by executing the
// same program again in slot mode, which worker_main also handles, so call it first thing in
// main, before doing other work.
#pragma once

namespace lrts {

int worker_main(int argc, char** argv);

}  // namespace lrts
