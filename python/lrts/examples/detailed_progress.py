"""Services that report progress, watched live in the terminal (the original lrts's detailed
progress example): a status line with the stage, then one bar per task, redrawn in place.
python3 -m lrts.examples.detailed_progress [--scheduler-port 5555] [--progress-port 5454]
    [--tasks 6] [--iterations 50] [--sleep-ms 40]"""
import argparse

from lrts import ApplicationInformation, ClientApplication, DetailedLogger, LogLevel
from lrts.examples.services.progress_service import ProgressTrackedService


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scheduler-address", default="127.0.0.1")
    parser.add_argument("--scheduler-port", default="5555")
    parser.add_argument("--progress-port", default="5454")
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--sleep-ms", type=int, default=40)
    args = parser.parse_args()
    application_information = ApplicationInformation(
        scheduler_address=args.scheduler_address, scheduler_port=args.scheduler_port,
        progress_server_address=args.scheduler_address, progress_server_port=args.progress_port)
    logger = DetailedLogger(log_level=LogLevel.TRACE, status_bar=True, status_color='green',
                            initial_stage='Initializing', min_delta=0.5)
    application = ClientApplication(application_information=application_information,
                                    logger=logger)
    application.start_application()

    logger.set_stage(stage='Scheduling Work')
    service_ids = [application.schedule_service(
        service=ProgressTrackedService(iterations=args.iterations, sleep_ms=args.sleep_ms))
        for _ in range(args.tasks)]

    logger.set_stage(stage='Waiting For Results')
    for result in application.as_completed(service_ids=service_ids):
        # Printed above the bars while they keep moving.
        print(f'Service with ID: {result.service_id} finished after {result.service_result} '
              'iterations', flush=True)
    logger.set_stage(stage='Done')
    application.stop_application()


if __name__ == '__main__':
    main()
