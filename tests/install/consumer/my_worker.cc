// A worker executable with its services linked in.
#include "square_service.hpp"

LRTS_REGISTER_SERVICE(SquareService);

int main(int argc, char** argv) { return lrts::worker_main(argc, argv); }
