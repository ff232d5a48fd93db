# Writes OUT: a C++ source defining `const char* const NAME` with the text of IN, so that the
# binary serves its assets with no files beside it. Run by the build (cmake -P).
file(READ "${IN}" text)
string(FIND "${text}" ")lrts_asset\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )lrts_asset\"")
endif()
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by cmake/embed.cmake; do not edit.\n"
  "namespace lrts::dashboard {\nextern const char* const ${NAME};\n"
  "const char* const ${NAME} = R\"lrts_asset(${text})lrts_asset\";\n}\n")
file(RENAME "${OUT}.tmp" "${OUT}")
